"""Drives the emulator with Microsoft's Python Dataverse SDK (powerplatform-dataverse-client)
and azure-identity, unmodified: tokens come from the emulator's Entra endpoint through MSAL's
own authority discovery, table names are resolved through the SDK's own metadata lookups, and
choice labels are turned into values through the emulator's option-set metadata.

Needs EMULATOR_PORT (the emulator's plain-HTTP loopback port, started with --behind-tls and
seed.json beside this file); run.sh does all of it.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pytest
from azure.identity import ClientSecretCredential
from PowerPlatform.Dataverse.client import DataverseClient
from PowerPlatform.Dataverse.core.errors import HttpError

from tls_front import TlsFront, make_certificate

TENANT = "72f988bf-0000-0000-0000-000000000001"
CLIENT_ID = "535fb089-9ff3-47b6-9bfb-4f1264799865"
SECRET = "sdk-check-secret~not-a-real-one"
COMMERCIAL = "10000000-0000-0000-0000-000000000003"
CONSENT = "msdynmkt_contactpointconsent4"


@pytest.fixture(scope="session")
def base_url():
    port = int(os.environ["EMULATOR_PORT"])
    folder = Path(tempfile.mkdtemp(prefix="cpc-emulator-tls-"))
    cert, key = make_certificate(folder)
    # requests (SDK) and azure-core (MSAL's transport) trust the throw-away certificate this way.
    os.environ["REQUESTS_CA_BUNDLE"] = str(cert)
    front = TlsFront(port, cert, key).start()
    yield f"https://127.0.0.1:{front.port}"
    front.stop()


@pytest.fixture(scope="session")
def credential(base_url):
    return ClientSecretCredential(
        TENANT,
        CLIENT_ID,
        SECRET,
        authority=base_url,
        disable_instance_discovery=True,
    )


@pytest.fixture(scope="session")
def client(base_url, credential):
    with DataverseClient(base_url, credential) as c:
        yield c


def consent(email: str, value="Opted In", **extra):
    """A purpose-level email consent; choices given by label, as the SDK allows."""
    row = {
        "msdynmkt_contactpointvalue": email,
        "msdynmkt_contactpointtype": "Email",
        "msdynmkt_contactpointconsenttype": "Purpose",
        "msdynmkt_value": value,
        "msdynmkt_source": "Internal",
        "msdynmkt_logicalreason": "No reasons",
        "msdynmkt_reason": "sdk-check",
        "msdynmkt_purposeId@odata.bind": f"/msdynmkt_purposes({COMMERCIAL})",
    }
    row.update(extra)
    return row


def unique_email(tag: str) -> str:
    return f"{tag}.{uuid.uuid4().hex[:8]}@example.com"


def test_azure_identity_gets_a_token_from_the_emulator_entra_endpoint(base_url, credential):
    token = credential.get_token(f"{base_url}/.default")
    assert token.token
    assert token.expires_on > 0


def test_table_metadata_names_entity_set_and_primary_key(client):
    info = client.tables.get(CONSENT)
    assert info["entity_set_name"] == "msdynmkt_contactpointconsent4s"
    assert info["primary_id_attribute"] == "msdynmkt_contactpointconsent4id"
    assert info["primary_name_attribute"] == "msdynmkt_contactpointvalue"


def test_list_contacts_with_a_filter(client):
    result = client.records.list(
        "contact",
        filter="emailaddress1 eq 'jane.o''brien@example.com'",
        select=["contactid", "fullname"],
    )
    rows = list(result)
    assert [r["fullname"] for r in rows] == ["Jane O'Brien"]


def test_list_purposes(client):
    rows = list(client.records.list("msdynmkt_purpose", select=["msdynmkt_name"]))
    assert {r["msdynmkt_name"] for r in rows} == {"Commercial", "Transactional"}


def test_create_consent_with_lookup_bind_resolves_choice_labels_from_metadata(client):
    record_id = client.records.create(CONSENT, consent(unique_email("create")))
    row = client.records.retrieve(CONSENT, record_id)
    assert row["msdynmkt_value"] == 534120001
    assert row["msdynmkt_contactpointtype"] == 534120000
    assert row["msdynmkt_logicalreason"] == 534119999
    assert row["_msdynmkt_purposeid_value"] == COMMERCIAL


def test_update_consent_then_read_it_back(client):
    record_id = client.records.create(CONSENT, consent(unique_email("update")))
    client.records.update(CONSENT, record_id, {"msdynmkt_value": "Opted Out", "msdynmkt_reason": "sdk-check update"})
    row = client.records.retrieve(CONSENT, record_id, select=["msdynmkt_value", "msdynmkt_reason"])
    assert row["msdynmkt_value"] == 534120002
    assert row["msdynmkt_reason"] == "sdk-check update"


def test_batch_of_creates_with_continue_on_error_reports_each_part(client):
    batch = client.batch.new()
    batch.records.create(CONSENT, consent(unique_email("batch1")))
    batch.records.create(CONSENT, consent(unique_email("batch2"), value=534129999))
    batch.records.create(CONSENT, consent(unique_email("batch3")))
    result = batch.execute(continue_on_error=True)
    assert [r.status_code for r in result.responses] == [204, 400, 204]
    assert result.failed[0].error_code == "0x8004431a"
    assert len(result.entity_ids) == 2


def test_change_set_creates_and_updates_through_a_content_id_reference(client):
    email = unique_email("changeset")
    batch = client.batch.new()
    with batch.changeset() as cs:
        ref = cs.records.create(CONSENT, consent(email))
        cs.records.update(CONSENT, ref, {"msdynmkt_value": "Opted Out"})
    result = batch.execute()
    assert not result.has_errors
    rows = list(
        client.records.list(CONSENT, filter=f"msdynmkt_contactpointvalue eq '{email}'", select=["msdynmkt_value"])
    )
    assert [r["msdynmkt_value"] for r in rows] == [534120002]


def test_wrong_case_navigation_property_in_a_bind_is_rejected(client):
    row = consent(unique_email("wrongcase"))
    row["msdynmkt_purposeid@odata.bind"] = row.pop("msdynmkt_purposeId@odata.bind")
    with pytest.raises(HttpError) as err:
        client.records.create(CONSENT, row)
    assert err.value.status_code == 400
    assert err.value.details["service_error_code"] == "0x80048d19"
    assert "An undeclared property 'msdynmkt_purposeid'" in str(err.value)

#!/usr/bin/env python3
"""Security checks on template.yaml that the linters do not make.

- The webhook route is protected by the JWT authorizer unless the operator
  explicitly turns it off (EnableWebhookAuth defaults to "true").
- The function may read exactly the configured secret, and decrypt only with
  the given KMS key, only through Secrets Manager; no other policy, no "*".
- API Gateway may only send messages to the webhook queue.
- The queue has a dead-letter queue and a visibility timeout of at least 6x
  the function timeout for every allowed timeout.

Run with the project's .venv python (cfn-lint provides the template decoder).
Exits non-zero with one line per violation.
"""
import json
import sys

from cfnlint.decode import decode

problems = []


def check(condition, message):
    if not condition:
        problems.append(message)


def walk(node):
    """Yields every dict and list node of a decoded template fragment."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def main(path):
    template, errors = decode(path)
    if errors:
        print(f"{path}: cannot decode: {errors}")
        return 1
    params = template["Parameters"]
    resources = template["Resources"]

    check(params["EnableWebhookAuth"].get("Default") == "true", "EnableWebhookAuth must default to \"true\"")
    route = resources["WebhookRoute"]["Properties"]
    check(route["AuthorizationType"] == {"Fn::If": ["AuthEnabled", "JWT", "NONE"]},
          "the webhook route must use the JWT authorizer whenever AuthEnabled")
    check(route["AuthorizerId"]["Fn::If"][1] == {"Ref": "WebhookAuthorizer"}, "the route must name WebhookAuthorizer")
    check(route.get("AuthorizationScopes", {}).get("Fn::If", [None, []])[1] == ["didomi-cpc-sync/webhooks.write"],
          "the route must require the webhooks.write scope")
    client = resources["DidomiClient"]["Properties"]
    check(client["AllowedOAuthFlows"] == ["client_credentials"], "the Didomi client must allow client_credentials only")

    function = resources["SyncFunction"]["Properties"]
    policies = function["Policies"]
    check(len(policies) == 2, f"the function must have exactly 2 policy entries, has {len(policies)}")
    check(policies[0] == {"AWSSecretsManagerGetSecretValuePolicy": {"SecretArn": {"Ref": "SecretArn"}}},
          "policy 1 must be GetSecretValue on the SecretArn parameter only")
    kms = policies[1].get("Fn::If", [])
    check(len(kms) == 3 and kms[0] == "HasKmsKey" and kms[2] == {"Ref": "AWS::NoValue"},
          "policy 2 must exist only when HasKmsKey")
    statements = kms[1]["Statement"] if len(kms) == 3 else []
    check(len(statements) == 1 and statements[0]["Action"] == "kms:Decrypt"
          and statements[0]["Resource"] == {"Ref": "SecretKmsKeyArn"}
          and "kms:ViaService" in json.dumps(statements[0].get("Condition", {})),
          "the KMS statement must allow only kms:Decrypt on SecretKmsKeyArn via Secrets Manager")

    role = resources["WebhookApiRole"]["Properties"]["Policies"]
    api_statements = [s for p in role for s in p["PolicyDocument"]["Statement"]]
    check(api_statements == [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": {"Fn::GetAtt": ["WebhookQueue", "Arn"]}}],
          "API Gateway may only sqs:SendMessage to the webhook queue")

    for name, resource in resources.items():
        for node in walk(resource.get("Properties", {})):
            if isinstance(node, dict) and node.get("Effect") == "Allow":
                check(node.get("Action") != "*" and node.get("Resource") != "*", f"{name}: an Allow statement uses \"*\"")

    queue = resources["WebhookQueue"]["Properties"]
    check("RedrivePolicy" in queue, "the webhook queue needs a dead-letter queue")
    visibility = template["Mappings"]["VisibilityBySeconds"]
    for timeout in params["FunctionTimeout"]["AllowedValues"]:
        entry = visibility.get(str(timeout))
        check(entry is not None and entry["Timeout"] >= 6 * int(timeout),
              f"visibility timeout for a {timeout}s function must be >= {6 * int(timeout)}s")
    events = function["Events"]["Webhooks"]["Properties"]
    check(events.get("FunctionResponseTypes") == ["ReportBatchItemFailures"],
          "the SQS trigger must report batch item failures, or failed messages are lost")

    for problem in problems:
        print(f"{path}: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "template.yaml"))

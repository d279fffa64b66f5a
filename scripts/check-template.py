#!/usr/bin/env python3
"""Security and operations checks on template.yaml that the linters do not make.

- The webhook route is protected by the JWT authorizer unless the operator
  explicitly turns it off (EnableWebhookAuth defaults to "true").
- The function may read exactly the configured secret, and decrypt only with
  the given KMS key, only through Secrets Manager; of SQS it may only change
  the visibility of the webhook queue's messages and send to the dead-letter
  queue; no other policy, no "*".
- API Gateway may only send messages to the webhook queue.
- The queue has a dead-letter queue and a visibility timeout of at least 6x
  the function timeout for every allowed timeout; MaxReceiveCount's default
  lets the retry backoff cover at least four days, with the figures stated.
- Both queues and every log group follow RetainData (default Retain); both
  queues deny non-TLS access; every log group has a retention and the
  LogKmsKeyArn key when set.
- Logs: JSON, SystemLogLevel INFO; HTTP API access logs with no caller
  address, identity or body.
- The function gets METRICS_NAMESPACE and DEAD_LETTER_QUEUE_URL; Tracing is a
  parameter; BatchSize over 10 always gets a batching window.
- The operations dashboard shows every metric the webhook function emits, the
  queues and the unconditional alarms; the reverse-sync dashboard (only with
  EnableReverseSync) every metric of a pass and its alarm; every alarm notifies AlarmTopicArn (when set) on ALARM and OK and
  fires within five minutes.
- Every checkov skip carries a reason.
- Reverse sync: off by default (EnableReverseSync "false", ReverseSyncMinutes 5);
  every reverse-sync resource exists only under ReverseSyncEnabled; the function
  is the same build as SyncFunction (same CodeUri, Handler, Runtime, Architectures
  and Metadata, so `sam build` builds bootstrap once) in CPC_SYNC_MODE
  reverse-sync, reserves concurrency 1, is not retried by Lambda, and times out
  below every allowed schedule period, whose rate expression is EventBridge's
  (singular for 1 minute); it may read exactly the integration secret and the
  Didomi API secret (when given) and only GetItem/PutItem/UpdateItem/DeleteItem
  the state table; the table is on demand, with point-in-time recovery, and
  follows RetainData; an alarm watches the function's errors.

Run with the project's .venv python (cfn-lint provides the template decoder).
Exits non-zero with one line per violation.
"""
import json
import re
import sys

from cfnlint.decode import decode

problems = []

# The function's embedded-metric-format metrics (namespace MetricsNamespace,
# dimension FunctionName); WebhooksSkipped also by SkipReason.
FUNCTION_METRICS = [
    "WebhooksReceived", "WebhooksSkipped", "ConsentsCreated", "ConsentsUpdated",
    "DecisionsStale", "DecisionsReplayed", "MessagesFailedRetryable", "MessagesFailedPermanent",
    "DataverseRequests", "DataverseThrottled", "DataverseRetryAfterSeconds", "BatchDurationMs",
    "ColdStart", "InitDurationMs",
]
SKIP_REASONS = ["anonymous", "pending_approval", "regulation", "unmapped", "no_contact", "type", "status", "echo"]
# The reverse-sync function's metrics (src/telemetry/metrics.rs, reverse_pass_line).
REVERSE_METRICS = [
    "ReverseRowsRead", "ReverseEventsPosted", "ReverseRowsIgnored", "ReverseRowsNotExpressible",
    "ReversePassFailed", "ReversePassSkipped", "ReversePassDurationMs", "DataverseRequests", "DataverseThrottled",
]
# Retry backoff of the function: 30 s doubling per delivery, capped at SQS's 12 h.
# 12 h less the 60 s the function keeps back for SQS's limit (src/lambda/backoff.rs).
FIRST_DELAY, MAX_DELAY = 30, 43140
FOUR_DAYS = 4 * 86400
ALARM_ACTIONS = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
RETAIN = {"Ref": "RetainData"}


def check(condition, message):
    if not condition:
        problems.append(message)
    return condition


def walk(node):
    """Yields every dict and list node of a decoded template fragment."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def dig(node, *path):
    """node[path[0]][path[1]]..., or None where a step is missing."""
    for step in path:
        if isinstance(node, dict):
            node = node.get(step)
        elif isinstance(node, list) and isinstance(step, int) and -len(node) <= step < len(node):
            node = node[step]
        else:
            return None
    return node


def plain(node):
    """The decoded template node as plain dicts, lists and strings."""
    return json.loads(json.dumps(node, default=str))


def backoff_span(receives):
    """Seconds of backoff the function adds over `receives` deliveries."""
    return sum(min(FIRST_DELAY * 2 ** n, MAX_DELAY) for n in range(receives))


def of_type(resources, kind):
    return {name: r for name, r in resources.items() if r.get("Type") == kind}


def check_auth(params, resources):
    check(params["EnableWebhookAuth"].get("Default") == "true", "EnableWebhookAuth must default to \"true\"")
    route = resources["WebhookRoute"]["Properties"]
    check(route["AuthorizationType"] == {"Fn::If": ["AuthEnabled", "JWT", "NONE"]},
          "the webhook route must use the JWT authorizer whenever AuthEnabled")
    check(dig(route, "AuthorizerId", "Fn::If", 1) == {"Ref": "WebhookAuthorizer"}, "the route must name WebhookAuthorizer")
    check(dig(route, "AuthorizationScopes", "Fn::If", 1) == ["didomi-cpc-sync/webhooks.write"],
          "the route must require the webhooks.write scope")
    client = resources["DidomiClient"]["Properties"]
    check(client["AllowedOAuthFlows"] == ["client_credentials"], "the Didomi client must allow client_credentials only")


def check_function_policies(resources):
    function = resources["SyncFunction"]["Properties"]
    policies = function.get("Policies", [])
    check(len(policies) == 3, f"the function must have exactly 3 policy entries, has {len(policies)}")
    check(dig(policies, 0) == {"AWSSecretsManagerGetSecretValuePolicy": {"SecretArn": {"Ref": "SecretArn"}}},
          "policy 1 must be GetSecretValue on the SecretArn parameter only")
    kms = dig(policies, 1, "Fn::If") or []
    check(len(kms) == 3 and kms[0] == "HasKmsKey" and kms[2] == {"Ref": "AWS::NoValue"},
          "policy 2 must exist only when HasKmsKey")
    statements = dig(kms, 1, "Statement") or []
    check(len(statements) == 1 and statements[0].get("Action") == "kms:Decrypt"
          and statements[0].get("Resource") == {"Ref": "SecretKmsKeyArn"}
          and "kms:ViaService" in json.dumps(statements[0].get("Condition", {})),
          "the KMS statement must allow only kms:Decrypt on SecretKmsKeyArn via Secrets Manager")
    sqs = [{k: s.get(k) for k in ("Effect", "Action", "Resource")} for s in dig(policies, 2, "Statement") or []]
    check(sqs == [
        {"Effect": "Allow", "Action": "sqs:ChangeMessageVisibility", "Resource": {"Fn::GetAtt": ["WebhookQueue", "Arn"]}},
        {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}},
    ], "policy 3 must allow exactly sqs:ChangeMessageVisibility on WebhookQueue and sqs:SendMessage on DeadLetterQueue")
    actions = [a for node in walk(policies) if isinstance(node, dict) and node.get("Effect") == "Allow"
               for a in (node.get("Action") if isinstance(node.get("Action"), list) else [node.get("Action")])]
    check(not [a for a in actions if str(a).startswith("sqs:") and a not in ("sqs:ChangeMessageVisibility", "sqs:SendMessage")],
          "the function's own policies may grant no SQS action but ChangeMessageVisibility and SendMessage")


def check_api_role(resources):
    role = resources["WebhookApiRole"]["Properties"]["Policies"]
    api_statements = [s for p in role for s in p["PolicyDocument"]["Statement"]]
    check(api_statements == [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": {"Fn::GetAtt": ["WebhookQueue", "Arn"]}}],
          "API Gateway may only sqs:SendMessage to the webhook queue")


def check_no_wildcards(resources):
    for name, resource in resources.items():
        for node in walk(resource.get("Properties", {})):
            if isinstance(node, dict) and node.get("Effect") == "Allow":
                check(node.get("Action") != "*" and node.get("Resource") != "*", f"{name}: an Allow statement uses \"*\"")


def check_queue_and_retries(template, params, resources):
    function = resources["SyncFunction"]["Properties"]
    queue = resources["WebhookQueue"]["Properties"]
    check("RedrivePolicy" in queue, "the webhook queue needs a dead-letter queue")
    check(dig(queue, "RedrivePolicy", "maxReceiveCount") == {"Ref": "MaxReceiveCount"},
          "the webhook queue's maxReceiveCount must be the MaxReceiveCount parameter")
    visibility = template["Mappings"]["VisibilityBySeconds"]
    for timeout in params["FunctionTimeout"]["AllowedValues"]:
        entry = visibility.get(str(timeout))
        check(entry is not None and entry["Timeout"] >= 6 * int(timeout),
              f"visibility timeout for a {timeout}s function must be >= {6 * int(timeout)}s")
    events = function["Events"]["Webhooks"]["Properties"]
    check(events.get("FunctionResponseTypes") == ["ReportBatchItemFailures"],
          "the SQS trigger must report batch item failures, or failed messages are lost")

    receives = int(params["MaxReceiveCount"].get("Default", 0))
    last_try, to_dlq = backoff_span(receives - 1), backoff_span(receives)
    check(last_try >= FOUR_DAYS,
          f"MaxReceiveCount default {receives}: the last try comes {last_try} s after the first; "
          f"the backoff must cover at least {FOUR_DAYS} s (4 days)")
    description = params["MaxReceiveCount"].get("Description", "")
    check(str(last_try) in description and str(to_dlq) in description,
          f"the MaxReceiveCount description must state the figures for its default: last try {last_try} s, "
          f"dead-letter queue {to_dlq} s")

    check(int(params["BatchSize"].get("MaxValue", 0)) <= 100, "BatchSize must allow at most 100")
    check(params.get("MaximumBatchingWindowInSeconds", {}).get("Default") in (0, "0"),
          "MaximumBatchingWindowInSeconds must default to 0")
    check(events.get("MaximumBatchingWindowInSeconds") == {"Fn::If": [
        "HasBatchingWindow", {"Ref": "MaximumBatchingWindowInSeconds"}, {"Fn::If": ["LargeBatch", 1, {"Ref": "AWS::NoValue"}]}]},
        "the SQS trigger's window must be MaximumBatchingWindowInSeconds, else 1 s when LargeBatch (Lambda requires >= 1 s above 10)")
    large = plain(dig(template, "Conditions", "LargeBatch"))
    small_sizes = sorted(int(eq["Fn::Equals"][1]) for eq in dig(large, "Fn::Not", 0, "Fn::Or") or []
                         if dig(eq, "Fn::Equals", 0) == {"Ref": "BatchSize"})
    check(small_sizes == list(range(1, 11)), "LargeBatch must be true exactly when BatchSize is not 1..10")


def check_retention_and_tls(template, params, resources):
    check(params.get("RetainData", {}).get("Default") == "Retain"
          and sorted(params.get("RetainData", {}).get("AllowedValues", [])) == ["Delete", "Retain"],
          "RetainData must be Retain (default) or Delete")
    queues = of_type(resources, "AWS::SQS::Queue")
    log_groups = of_type(resources, "AWS::Logs::LogGroup")
    tables = of_type(resources, "AWS::DynamoDB::Table")
    check(set(queues) >= {"WebhookQueue", "DeadLetterQueue"}, "both queues must be in the template")
    for name, resource in {**queues, **log_groups, **tables}.items():
        for attribute in ("DeletionPolicy", "UpdateReplacePolicy"):
            check(resource.get(attribute) == RETAIN, f"{name}: {attribute} must be !Ref RetainData")
    for name, resource in log_groups.items():
        props = resource.get("Properties", {})
        check("RetentionInDays" in props, f"{name}: a log group needs a retention")
        check(props.get("KmsKeyId") == {"Fn::If": ["HasLogKmsKey", {"Ref": "LogKmsKeyArn"}, {"Ref": "AWS::NoValue"}]},
              f"{name}: KmsKeyId must be LogKmsKeyArn when set")

    policies = {**of_type(resources, "AWS::SQS::QueueInlinePolicy"), **of_type(resources, "AWS::SQS::QueuePolicy")}
    for queue in queues:
        tls_only = False
        for policy in policies.values():
            props = policy.get("Properties", {})
            targets = [props.get("Queue")] + list(props.get("Queues", []))
            if {"Ref": queue} not in targets:
                continue
            for statement in dig(props, "PolicyDocument", "Statement") or []:
                tls_only |= (statement.get("Effect") == "Deny" and statement.get("Principal") == "*"
                             and statement.get("Action") == "sqs:*"
                             and statement.get("Resource") == {"Fn::GetAtt": [queue, "Arn"]}
                             and str(dig(statement, "Condition", "Bool", "aws:SecureTransport")).lower() == "false")
        check(tls_only, f"{queue}: needs a queue policy denying sqs:* when aws:SecureTransport is false")


def check_logging_and_tracing(params, resources):
    function = resources["SyncFunction"]["Properties"]
    logging = function.get("LoggingConfig", {})
    check(logging.get("LogFormat") == "JSON", "the function must log JSON")
    check(logging.get("SystemLogLevel") == "INFO", "SystemLogLevel must be INFO (WARN drops the START/REPORT lines)")
    check(logging.get("LogGroup") == {"Ref": "SyncFunctionLogGroup"}, "the function must log to SyncFunctionLogGroup")

    tracing = params.get("Tracing", {})
    check(tracing.get("Default") == "PassThrough" and sorted(tracing.get("AllowedValues", [])) == ["Active", "PassThrough"],
          "the Tracing parameter must be Active or PassThrough, default PassThrough")
    check(function.get("Tracing") == {"Ref": "Tracing"}, "the function's Tracing must be the Tracing parameter")

    variables = dig(function, "Environment", "Variables") or {}
    check(variables.get("METRICS_NAMESPACE") == {"Ref": "MetricsNamespace"}, "env METRICS_NAMESPACE must be the MetricsNamespace parameter")
    check(params.get("MetricsNamespace", {}).get("Default") == "DidomiCpcSync", "MetricsNamespace must default to DidomiCpcSync")
    check(variables.get("DEAD_LETTER_QUEUE_URL") == {"Ref": "DeadLetterQueue"}, "env DEAD_LETTER_QUEUE_URL must be the dead-letter queue's URL")

    stage = resources["WebhookStage"]["Properties"]
    access = stage.get("AccessLogSettings", {})
    destination = dig(access, "DestinationArn", "Fn::GetAtt") or [None]
    group = resources.get(destination[0], {})
    check(group.get("Type") == "AWS::Logs::LogGroup" and "RetentionInDays" in group.get("Properties", {}),
          "the webhook stage must write access logs to a log group of this stack with a retention")
    fmt = str(access.get("Format", ""))
    for forbidden in ("$context.identity.", "sourceIp", "body", "$context.authorizer.claims", "$request."):
        check(forbidden.lower() not in fmt.lower(), f"the access log format must not hold {forbidden} (no address, identity or body)")
    for wanted in ("$context.requestId", "$context.routeKey", "$context.status", "$context.responseLength",
                   "$context.integrationErrorMessage", "$context.authorizer.error", "$context.requestTime"):
        check(wanted in fmt, f"the access log format must hold {wanted}")
    try:
        json.loads(fmt)
    except ValueError as error:
        check(False, f"the access log format must be one JSON object: {error}")


def dashboard_metrics(body):
    """(namespace, name, {dimension: value}, stat) of every metric row of a dashboard body."""
    rows = []
    for widget in body.get("widgets", []):
        properties = widget.get("properties", {})
        previous = []
        for row in properties.get("metrics", []):
            options = row[-1] if row and isinstance(row[-1], dict) else {}
            fields = [f for f in row if not isinstance(f, dict)]
            fields = [previous[i] if f == "." and i < len(previous) else f for i, f in enumerate(fields)]
            previous = fields
            if len(fields) >= 2:
                dims = dict(zip(fields[2::2], fields[3::2]))
                rows.append((fields[0], fields[1], dims, options.get("stat", properties.get("stat"))))
    return rows


def check_dashboard_and_alarms(resources):
    alarms = of_type(resources, "AWS::CloudWatch::Alarm")
    for name, alarm in alarms.items():
        props = alarm.get("Properties", {})
        check(props.get("AlarmActions") == ALARM_ACTIONS, f"{name}: AlarmActions must be [AlarmTopicArn] when HasAlarmTopic")
        check(props.get("OKActions") == ALARM_ACTIONS, f"{name}: OKActions must be [AlarmTopicArn] when HasAlarmTopic")
        window = int(props.get("Period", 0)) * int(props.get("EvaluationPeriods", 0))
        check(0 < window <= 300, f"{name}: must fire within 5 minutes (Period x EvaluationPeriods = {window} s)")
        check(props.get("TreatMissingData") == "notBreaching", f"{name}: missing data must not breach")

    def alarms_on(namespace, metric, **dims):
        found = []
        for name, alarm in alarms.items():
            props = alarm.get("Properties", {})
            have = {d.get("Name"): d.get("Value") for d in props.get("Dimensions", [])}
            if props.get("Namespace") == namespace and props.get("MetricName") == metric and all(have.get(k) == v for k, v in dims.items()):
                found.append(props)
        return found

    own = {"Ref": "MetricsNamespace"}
    function = {"FunctionName": {"Ref": "SyncFunction"}}
    permanent = alarms_on(own, "MessagesFailedPermanent", **function)
    check(any(p.get("Statistic") == "Sum" and int(p.get("Period", 0)) == 60 and float(p.get("Threshold", -1)) == 0
              and p.get("ComparisonOperator") == "GreaterThanThreshold" for p in permanent),
          "an alarm must fire on any MessagesFailedPermanent (Sum > 0 over 1 minute)")
    check(any(int(p.get("DatapointsToAlarm", p.get("EvaluationPeriods", 1))) > 1 for p in alarms_on(own, "DataverseThrottled", **function)),
          "an alarm must fire on sustained DataverseThrottled (several of the last minutes)")
    api = {"ApiId": {"Ref": "WebhookApi"}, "Stage": "$default"}
    for metric in ("4xx", "5xx"):
        check(alarms_on("AWS/ApiGateway", metric, **api), f"an alarm must watch the webhook API's {metric} (AWS/ApiGateway, ApiId and Stage)")
    check(alarms_on("AWS/SQS", "ApproximateNumberOfMessagesVisible", QueueName={"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}),
          "an alarm must watch the dead-letter queue's depth")
    check(alarms_on("AWS/SQS", "ApproximateAgeOfOldestMessage", QueueName={"Fn::GetAtt": ["WebhookQueue", "QueueName"]}),
          "an alarm must watch the age of the oldest queued webhook")

    dashboards = of_type(resources, "AWS::CloudWatch::Dashboard")
    check(sorted(dashboards) == ["OperationsDashboard", "ReverseSyncDashboard"],
          f"the stack must have OperationsDashboard and ReverseSyncDashboard, has {sorted(dashboards)}")
    check("Condition" not in dashboards.get("OperationsDashboard", {}), "OperationsDashboard must be unconditional")
    check(dashboards.get("ReverseSyncDashboard", {}).get("Condition") == "ReverseSyncEnabled",
          "ReverseSyncDashboard must exist only when ReverseSyncEnabled")

    operations = dashboard_body(resources, dashboards.get("OperationsDashboard"))
    if operations is not None:
        rows = dashboard_metrics(operations)
        fn = "{{SyncFunction}}"
        for metric in FUNCTION_METRICS:
            check(any(ns == "{{MetricsNamespace}}" and name == metric and dims.get("FunctionName") == fn for ns, name, dims, _ in rows),
                  f"the dashboard must show {metric} (namespace MetricsNamespace, dimension FunctionName)")
        for reason in SKIP_REASONS:
            check(any(name == "WebhooksSkipped" and dims == {"FunctionName": fn, "SkipReason": reason} for _, name, dims, _ in rows),
                  f"the dashboard must show WebhooksSkipped for SkipReason {reason}")
        for stat in ("p50", "p99"):
            check(any(name == "BatchDurationMs" and s == stat for _, name, _, s in rows), f"the dashboard must show BatchDurationMs {stat}")
        for queue, metric in (("WebhookQueue", "ApproximateNumberOfMessagesVisible"), ("WebhookQueue", "ApproximateAgeOfOldestMessage"),
                              ("DeadLetterQueue", "ApproximateNumberOfMessagesVisible")):
            check(any(ns == "AWS/SQS" and name == metric and dims.get("QueueName") == "{{" + queue + ".QueueName}}" for ns, name, dims, _ in rows),
                  f"the dashboard must show {metric} of {queue}")

    reverse = dashboard_body(resources, dashboards.get("ReverseSyncDashboard"))
    if reverse is not None:
        rows = dashboard_metrics(reverse)
        for metric in REVERSE_METRICS:
            check(any(ns == "{{MetricsNamespace}}" and name == metric and dims.get("FunctionName") == "{{ReverseSyncFunction}}"
                      for ns, name, dims, _ in rows),
                  f"the reverse-sync dashboard must show {metric} (namespace MetricsNamespace, dimension FunctionName)")

    # Each alarm is listed on the dashboard that exists when it does: the
    # unconditional ones on OperationsDashboard, the reverse sync's on its own.
    for name, alarm in alarms.items():
        body = reverse if alarm.get("Condition") == "ReverseSyncEnabled" else operations
        shown = {a for w in (body or {}).get("widgets", []) if w.get("type") == "alarm" for a in w.get("properties", {}).get("alarms", [])}
        check("{{" + name + ".Arn}}" in shown, f"{name} must be listed in the alarm widget of its dashboard")


def dashboard_body(resources, dashboard):
    """A dashboard's body as JSON (each ${X} as {{X}}), or None after reporting why it is not."""
    if dashboard is None:
        return None
    source = dig(dashboard, "Properties", "DashboardBody", "Fn::Sub")
    if not check(isinstance(source, str), "a dashboard body must be a single Fn::Sub string"):
        return None
    try:
        body = json.loads(re.sub(r"\$\{([^}!]+)\}", lambda m: "{{" + m.group(1) + "}}", source))
    except ValueError as error:
        check(False, f"a dashboard body must be JSON once substituted: {error}")
        return None
    for reference in set(re.findall(r"\$\{([^}!]+)\}", source)):
        target = reference.split(".")[0]
        check(target in resources or reference.startswith("AWS::") or reference == "MetricsNamespace",
              f"a dashboard refers to ${{{reference}}}, which is neither a resource nor MetricsNamespace")
        condition = resources.get(target, {}).get("Condition")
        check(condition is None or condition == dashboard.get("Condition"),
              f"a dashboard refers to ${{{reference}}}, which exists only under {condition}")
    return body


REVERSE_RESOURCES = ["ReverseSyncStateTable", "ReverseSyncFunctionLogGroup", "ReverseSyncFunction", "ReverseSyncErrorsAlarm",
                     "ReverseSyncDashboard"]
STATE_ACTIONS = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]


def check_reverse_sync(template, params, resources):
    check(params["EnableReverseSync"].get("Default") == "false"
          and sorted(params["EnableReverseSync"].get("AllowedValues", [])) == ["false", "true"],
          "EnableReverseSync must be \"true\" or \"false\", default \"false\"")
    check(str(params["ReverseSyncMinutes"].get("Default")) == "5", "ReverseSyncMinutes must default to 5")
    check(dig(template, "Conditions", "ReverseSyncEnabled") == {"Fn::Equals": [{"Ref": "EnableReverseSync"}, "true"]},
          "ReverseSyncEnabled must be EnableReverseSync == \"true\"")
    for name in REVERSE_RESOURCES:
        check(resources.get(name, {}).get("Condition") == "ReverseSyncEnabled", f"{name} must exist only under ReverseSyncEnabled")
    for name, resource in resources.items():
        if name.startswith("ReverseSync"):
            check(resource.get("Condition") == "ReverseSyncEnabled", f"{name} must exist only under ReverseSyncEnabled")

    schedule = template["Mappings"]["ReverseSyncSchedule"]
    for minutes in params["ReverseSyncMinutes"]["AllowedValues"]:
        entry = schedule.get(str(minutes))
        if not check(entry is not None, f"ReverseSyncSchedule has no entry for {minutes} minutes"):
            continue
        unit = "minute" if int(minutes) == 1 else "minutes"
        check(entry["Rate"] == f"rate({minutes} {unit})", f"ReverseSyncSchedule {minutes}: the rate must be rate({minutes} {unit})")
        check(0 < int(entry["Timeout"]) < 60 * int(minutes) and int(entry["Timeout"]) <= 900,
              f"ReverseSyncSchedule {minutes}: the timeout must be below the period and at most 900 s")

    sync = resources["SyncFunction"]
    reverse = resources["ReverseSyncFunction"]
    props = reverse["Properties"]
    for key in ("CodeUri", "Handler", "Runtime", "Architectures"):
        check(props.get(key) == sync["Properties"].get(key), f"ReverseSyncFunction's {key} must equal SyncFunction's (one build)")
    check(plain(reverse.get("Metadata")) == plain(sync.get("Metadata")),
          "ReverseSyncFunction's Metadata must equal SyncFunction's, or sam build builds bootstrap twice")
    check(props.get("ReservedConcurrentExecutions") == 1, "ReverseSyncFunction must reserve concurrency 1 (one pass at a time)")
    check(props.get("Timeout") == {"Fn::FindInMap": ["ReverseSyncSchedule", {"Ref": "ReverseSyncMinutes"}, "Timeout"]},
          "ReverseSyncFunction's timeout must come from ReverseSyncSchedule")
    check(dig(props, "EventInvokeConfig", "MaximumRetryAttempts") == 0,
          "ReverseSyncFunction must not be retried by Lambda (the next schedule retries from the watermark)")
    variables = dig(props, "Environment", "Variables") or {}
    check(variables.get("CPC_SYNC_MODE") == "reverse-sync", "ReverseSyncFunction needs CPC_SYNC_MODE reverse-sync")
    check(variables.get("STATE_TABLE") == {"Ref": "ReverseSyncStateTable"}, "ReverseSyncFunction's STATE_TABLE must be the state table")
    check(variables.get("SECRET_ID") == {"Ref": "SecretArn"}, "ReverseSyncFunction's SECRET_ID must be SecretArn")
    check(variables.get("DIDOMI_API_SECRET_ID") == {"Fn::If": ["HasDidomiApiSecret", {"Ref": "DidomiApiSecretArn"}, {"Ref": "AWS::NoValue"}]},
          "ReverseSyncFunction's DIDOMI_API_SECRET_ID must be DidomiApiSecretArn when given")
    check(dig(props, "LoggingConfig", "LogGroup") == {"Ref": "ReverseSyncFunctionLogGroup"}
          and dig(props, "LoggingConfig", "LogFormat") == "JSON",
          "ReverseSyncFunction must log JSON to ReverseSyncFunctionLogGroup")
    events = list((props.get("Events") or {}).values())
    check(len(events) == 1 and events[0].get("Type") in ("Schedule", "ScheduleV2")
          and dig(events[0], "Properties", "Schedule") == {"Fn::FindInMap": ["ReverseSyncSchedule", {"Ref": "ReverseSyncMinutes"}, "Rate"]},
          "ReverseSyncFunction's one event must be its schedule, at the ReverseSyncSchedule rate")

    policies = props.get("Policies", [])
    check(len(policies) == 4, f"ReverseSyncFunction must have exactly 4 policy entries, has {len(policies)}")
    check(dig(policies, 0) == {"AWSSecretsManagerGetSecretValuePolicy": {"SecretArn": {"Ref": "SecretArn"}}},
          "reverse policy 1 must be GetSecretValue on SecretArn")
    check(dig(policies, 1) == {"Fn::If": ["HasDidomiApiSecret",
                                          {"AWSSecretsManagerGetSecretValuePolicy": {"SecretArn": {"Ref": "DidomiApiSecretArn"}}},
                                          {"Ref": "AWS::NoValue"}]},
          "reverse policy 2 must be GetSecretValue on DidomiApiSecretArn, only when given")
    kms = dig(policies, 2, "Fn::If") or []
    statements = dig(kms, 1, "Statement") or []
    check(len(kms) == 3 and kms[0] == "HasKmsKey" and len(statements) == 1 and statements[0].get("Action") == "kms:Decrypt"
          and statements[0].get("Resource") == {"Ref": "SecretKmsKeyArn"} and "kms:ViaService" in json.dumps(statements[0].get("Condition", {})),
          "reverse policy 3 must allow only kms:Decrypt on SecretKmsKeyArn via Secrets Manager, when HasKmsKey")
    state = [{k: st.get(k) for k in ("Effect", "Action", "Resource")} for st in dig(policies, 3, "Statement") or []]
    check(state == [{"Effect": "Allow", "Action": STATE_ACTIONS, "Resource": {"Fn::GetAtt": ["ReverseSyncStateTable", "Arn"]}}],
          "reverse policy 4 must allow exactly GetItem, PutItem, UpdateItem and DeleteItem on the state table")

    table = resources["ReverseSyncStateTable"]["Properties"]
    check(table.get("BillingMode") == "PAY_PER_REQUEST", "the state table must be PAY_PER_REQUEST")
    check(dig(table, "PointInTimeRecoverySpecification", "PointInTimeRecoveryEnabled") is True,
          "the state table needs point-in-time recovery")
    check(table.get("KeySchema") == [{"AttributeName": "pk", "KeyType": "HASH"}],
          "the state table's key must be pk (HASH), as src/adapters/dynamodb_state.rs expects")
    alarm = resources["ReverseSyncErrorsAlarm"]["Properties"]
    check(alarm.get("Namespace") == "AWS/Lambda" and alarm.get("MetricName") == "Errors"
          and alarm.get("Dimensions") == [{"Name": "FunctionName", "Value": {"Ref": "ReverseSyncFunction"}}],
          "ReverseSyncErrorsAlarm must watch the reverse-sync function's Errors")


def check_suppressions(resources):
    for name, resource in resources.items():
        for skip in dig(resource, "Metadata", "checkov", "skip") or []:
            check(bool(str(skip.get("comment", "")).strip()), f"{name}: checkov skip {skip.get('id')} needs a comment giving the reason")


def main(path):
    template, errors = decode(path)
    if errors:
        print(f"{path}: cannot decode: {errors}")
        return 1
    params = template["Parameters"]
    resources = template["Resources"]
    for step in (lambda: check_auth(params, resources),
                 lambda: check_function_policies(resources),
                 lambda: check_api_role(resources),
                 lambda: check_no_wildcards(resources),
                 lambda: check_queue_and_retries(template, params, resources),
                 lambda: check_retention_and_tls(template, params, resources),
                 lambda: check_logging_and_tracing(params, resources),
                 lambda: check_dashboard_and_alarms(resources),
                 lambda: check_reverse_sync(template, params, resources),
                 lambda: check_suppressions(resources)):
        try:
            step()
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
            problems.append(f"a required part of the template is missing or malformed: {type(error).__name__}: {error}")

    for problem in problems:
        print(f"{path}: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "template.yaml"))

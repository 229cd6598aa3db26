"""Writes workflows/*.json, the exported n8n workflows (deterministic node ids). Edit here, run
`.venv/bin/python workflows/generate.py`, and commit the JSON: n8n imports the JSON files."""
import json, uuid
from pathlib import Path

OUT = Path(__file__).resolve().parent
NS = uuid.UUID("6f1d3c1e-8f0a-4c4e-9b7a-2c1b7d0e5a10")


def nid(wf, name):
    return str(uuid.uuid5(NS, f"{wf}/{name}"))


def workflow_id(key):
    """A stable workflow id in n8n's own form (16 letters and digits), so that `n8n import:workflow
    --input=<file>` can store the export (n8n >= 2.34 refuses an export without an id) and a second
    import updates the same workflow instead of adding a copy."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    n, out = uuid.uuid5(NS, f"workflow/{key}").int, ""
    for _ in range(16):
        n, r = divmod(n, 62)
        out += alphabet[r]
    return out


class WF:
    def __init__(self, key, name):
        self.key, self.name, self.nodes, self.conn = key, name, [], {}

    def add(self, name, type_, version, params, pos, **extra):
        node = {"parameters": params, "id": nid(self.key, name), "name": name, "type": type_,
                "typeVersion": version, "position": list(pos)}
        node.update(extra)
        self.nodes.append(node)
        return name

    def note(self, title, text, pos, width=420, height=260, color=None):
        params = {"content": f"## {title}\n{text}", "height": height, "width": width}
        if color:
            params["color"] = color
        self.add(f"Note: {title}", "n8n-nodes-base.stickyNote", 1, params, pos)

    def link(self, src, dst, out=0):
        outs = self.conn.setdefault(src, {"main": []})["main"]
        while len(outs) <= out:
            outs.append([])
        outs[out].append({"node": dst, "type": "main", "index": 0})

    def chain(self, *names):
        for a, b in zip(names, names[1:]):
            self.link(a, b)

    def dump(self, filename, tags):
        wf = {"id": workflow_id(self.key), "name": self.name, "nodes": self.nodes, "connections": self.conn, "active": False,
              "settings": {"executionOrder": "v1", "saveManualExecutions": True,
                           "saveDataSuccessExecution": "all", "saveDataErrorExecution": "all"},
              "pinData": {}, "meta": {"templateCredsSetupCompleted": False},
              "tags": [{"name": t} for t in tags]}
        (OUT / filename).write_text(json.dumps(wf, indent=2) + "\n")


def assign(name, value, type_="string"):
    return {"id": str(uuid.uuid5(NS, f"assign/{name}/{value}")), "name": name, "value": value, "type": type_}


def set_node(assignments, include_other=False, keep_binary=False):
    params = {"assignments": {"assignments": assignments}, "options": {}}
    if include_other:
        params["includeOtherFields"] = True
        if keep_binary:
            params["options"] = {"stripBinary": False}
    return params


def if_params(left, op_type, operation, right=None):
    cond = {"id": str(uuid.uuid5(NS, f"if/{left}")), "leftValue": left, "operator": {"type": op_type, "operation": operation}}
    if right is None:
        cond["rightValue"] = ""
        cond["operator"]["singleValue"] = True
    else:
        cond["rightValue"] = right
    return {"conditions": {"options": {"caseSensitive": True, "leftValue": "", "typeValidation": "loose", "version": 2},
                           "conditions": [cond], "combinator": "and"}, "options": {"looseTypeValidation": True}}


def http(method, url, auth, body=None, multipart=None, timeout_ms=300000, json_response=True):
    p = {"method": method, "url": url}
    if auth == "tunebridge":
        p.update(authentication="predefinedCredentialType", nodeCredentialType="tunebridgeApi")
    elif auth == "header":
        p.update(authentication="genericCredentialType", genericAuthType="httpHeaderAuth")
    if body is not None:
        p.update(sendBody=True, specifyBody="json", jsonBody=body)
    if multipart is not None:
        p.update(sendBody=True, contentType="multipart-form-data", bodyParameters={"parameters": multipart})
    p["options"] = {"timeout": timeout_ms}
    return p


# The reviewer's form (a Wait node resumed by form): n8n names each answer by its field's label.
FIELDS, DECISION_LABEL, NOTE, REVIEWER = "Fields (JSON)", "Decision", "Note", "Reviewer"
CORRECTIONS = f"JSON.parse($json['{FIELDS}'] || '{{}}')"
DECISION = f"(['approve', 'reject'].includes($json['{DECISION_LABEL}']) ? $json['{DECISION_LABEL}'] : '')"
HELD = "$('Held for review?').item.json"


def review_form():
    """A Wait node that resumes when the reviewer submits a form showing the model's answer."""
    describe = (f"={{{{ 'Document ' + {HELD}.id + ' (' + {HELD}.doc_type + '). The model says: ' + {HELD}.decision "
                f"+ '.\\n\\nWhy a person is asked:\\n' + ({HELD}.flags || []).map(f => '- ' + (f.field ? f.field + ': ' : '') "
                f"+ f.why + (f.detail ? ' (' + f.detail + ')' : '')).join('\\n') + '\\n\\nConfidence: ' + "
                f"Object.entries({HELD}.confidence || {{}}).map(([k, v]) => k + ' ' + Number(v).toFixed(2)).join(', ') "
                f"+ ({HELD}.rationale ? '\\n\\n' + {HELD}.rationale : '') }}}}")
    field = lambda label, type_, **kw: {"fieldLabel": label, "fieldType": type_, **kw}  # noqa: E731
    return {
        "resume": "form", "formTitle": f"={{{{ 'Review ' + {HELD}.doc_type + ' ' + {HELD}.id }}}}",
        "formDescription": describe,
        "formFields": {"values": [
            field(FIELDS, "textarea", requiredField=True,
                  defaultValue=f"={{{{ JSON.stringify({HELD}.fields, null, 2) }}}}"),
            field(DECISION_LABEL, "dropdown", requiredField=True,
                  fieldOptions={"values": [{"option": "policy"}, {"option": "approve"}, {"option": "reject"}]}),
            field(NOTE, "textarea"),
            field(REVIEWER, "text", placeholder="your name"),
        ]},
        "options": {},  # no time limit: a review that times out must not resume as an empty review
    }


def upload_form(w, key, path, intake_path, y):
    """The Form trigger front door: a person uploads a file; it is posted to this workflow's own intake
    webhook (n8n refuses a Respond to Webhook node downstream of a Form trigger, so the form cannot share the
    webhook's path) and the record is shown on the form's ending page."""
    w.note("Upload form",
           f"People without an API client open `/form/{path}`, pick a file and a document type. **Form settings** "
           f"holds this workflow's own intake URL (`/webhook/{intake_path}`): the file is posted there, so both "
           "doors run the same steps, and the form's last page shows the record (and the review form's link when "
           "it is held for review).", (-80, y - 300), width=520, height=220, color=6)
    w.add("Document uploaded", "n8n-nodes-base.formTrigger", 2.2, {
        "formTitle": "Send a document to tunebridge",
        "formDescription": "A PDF, an image (PNG, JPEG, TIFF) or a .txt file. The fields are extracted and checked; "
                           "you see the result on the next page.",
        "formFields": {"values": [
            {"fieldLabel": "Document", "fieldType": "file", "requiredField": True, "multipleFiles": False,
             "acceptFileTypes": ".pdf,.png,.jpg,.jpeg,.tif,.tiff,.txt"},
            {"fieldLabel": "Document type", "fieldType": "dropdown", "requiredField": True,
             "fieldOptions": {"values": [{"option": "detect"}, {"option": "receipt"}, {"option": "invoice"},
                                         {"option": "bank_statement"}, {"option": "kyc"}]}},
        ]},
        "responseMode": "lastNode", "options": {"path": path},
    }, (0, y), webhookId=nid(key, "form-id"))
    w.add("Form settings", "n8n-nodes-base.set", 3.4, set_node([
        assign("intake_url", f"http://127.0.0.1:5678/webhook/{intake_path}"),
    ], include_other=True, keep_binary=True), (220, y))
    w.add("Send to intake", "n8n-nodes-base.httpRequest", 4.2, http(
        "POST", "={{ $json.intake_url }}", None, multipart=[
            {"parameterType": "formBinaryData", "name": "file", "inputDataFieldName": "Document"},
            {"name": "type", "value": "={{ $json['Document type'] === 'detect' ? '' : $json['Document type'] }}"}]),
          (440, y))
    w.add("Show the record", "n8n-nodes-base.form", 1, {
        "operation": "completion", "respondWith": "text",
        "completionTitle": "={{ 'Document ' + $json.id + ': ' + $json.status.replace('_', ' ') }}",
        "completionMessage": "={{ 'Type: ' + $json.doc_type + '. Decision: ' + $json.decision + '.\\n' + "
                             "Object.entries($json.fields || {}).map(([k, v]) => k + ': ' + JSON.stringify(v)).join('\\n') "
                             "+ ($json.review_url ? '\\n\\nA reviewer has been asked: ' + $json.review_url : '') }}",
        "options": {},
    }, (660, y))
    w.chain("Document uploaded", "Form settings", "Send to intake", "Show the record")


TUNEBRIDGE = "n8n-nodes-tunebridge.tunebridge"  # the community node (n8n_nodes/)
CREDS = {"tunebridge": {"tunebridgeApi": {"id": "", "name": "Tunebridge API"}},
         "openai": {"openAiApi": {"id": "", "name": "Tunebridge (OpenAI-compatible)"}},
         "header": {"httpHeaderAuth": {"id": "", "name": "Tunebridge API key (header)"}},
         None: None}


def intake(auth, key, filename, title, path, form_path):
    w = WF(key, title)
    upload_form(w, key, form_path, path, 520)
    creds = CREDS[auth]
    cred_kw = {"credentials": creds} if creds else {}
    node = auth == "tunebridge"  # the community node's Document → Process / Review; else core HTTP nodes
    how = ("the community node package `n8n-nodes-tunebridge`: its **Tunebridge** node (*Document → Process*, "
           "*Document → Review*) with the **Tunebridge API** credential, whose base URL is the service's"
           if auth == "tunebridge" else
           "only core nodes: HTTP Request with a **Header Auth** credential "
           "(name `Authorization`, value `Bearer <API key>`)")
    w.note("Document intake",
           f"POST a document to this workflow's webhook (`/webhook/{path}`):\n"
           "- JSON `{\"text\": \"...\", \"type\": \"receipt\"?, \"adapter\": \"receipts@prod\"?, \"notify_url\": \"https://...\"?}`\n"
           "- or multipart with a `file` part (PDF, image, .txt) and optional `type`.\n\n"
           "The service's `POST /v1/documents` extracts, validates and decides it. The webhook answers with the record "
           "(plus `review_url` when it is held for review).\n\n"
           f"Uses {how}. Edit **Settings** for "
           + ("the store folder and the default notification URL." if node else
              "the service URL, the store folder and the default notification URL."),
           (-80, -420), width=520, height=340)
    w.note("Human review",
           "A record with status `pending_review` is sent to `notify_url` (`event: document.review_requested`) with its "
           "fields, the reasons, and `review_url`: an n8n form (the Wait node's `$execution.resumeFormUrl`) that shows "
           "the model's fields, its reasons and confidence, pre-filled for correction.\n\n"
           "The reviewer edits the fields (JSON), picks a decision (or leaves it to the policy), adds a note and submits. "
           "The execution resumes, posts it to `POST /v1/documents/{id}/review` (corrections become examples of the "
           "dataset `corrections-<type>`, which trains the next adapter), and stores the final record.",
           (900, -520), width=560, height=330, color=5)
    w.note("Store and notify",
           "Every finished record (approved, rejected or reviewed) is appended as one JSON line to "
           "`<store_dir>/documents.jsonl` by *Read/Write Files from Disk*, then `notify_url` gets "
           "`event: document.stored`.\n\nn8n 2.x only writes inside `N8N_RESTRICT_FILE_ACCESS_TO` "
           "(default `~/.n8n-files`): the folder must be there, and must exist.",
           (2100, -420), width=480, height=260, color=4)

    w.add("Document received", "n8n-nodes-base.webhook", 2.1,
          {"httpMethod": "POST", "path": path, "responseMode": "responseNode", "options": {}},
          (0, 0), webhookId=nid(key, "webhook-id"))
    w.add("Settings", "n8n-nodes-base.set", 3.4, set_node([
        assign("base_url", "http://127.0.0.1:8000"),
        assign("store_dir", "/home/node/.n8n-files/tunebridge"),
        assign("notify_url", "={{ ($json.body || {}).notify_url || 'http://127.0.0.1:5678/webhook/tunebridge-notifications' }}"),
    ], include_other=True, keep_binary=True), (220, 0))
    w.add("File uploaded?", "n8n-nodes-base.if", 2.2,
          if_params("={{ $binary.file !== undefined }}", "boolean", "true"), (440, 0))
    if node:
        w.add("Process document (file)", TUNEBRIDGE, 1, {
            "resource": "document", "operation": "process", "inputSource": "binary", "binaryPropertyName": "file",
            "options": {"documentType": "={{ $json.body.type || '' }}", "adapter": "={{ $json.body.adapter || '' }}"},
        }, (680, -120), **cred_kw)
        w.add("Process document (text)", TUNEBRIDGE, 1, {
            "resource": "document", "operation": "process", "inputSource": "text", "text": "={{ $json.body.text }}",
            "options": {"documentType": "={{ $json.body.type || '' }}", "adapter": "={{ $json.body.adapter || '' }}",
                        "model": "={{ $json.body.model || '' }}"},
        }, (680, 120), **cred_kw)
    else:
        w.add("Process document (file)", "n8n-nodes-base.httpRequest", 4.2, http(
            "POST", "={{ $json.base_url }}/v1/documents", auth, multipart=[
                {"parameterType": "formBinaryData", "name": "file", "inputDataFieldName": "file"},
                {"name": "type", "value": "={{ $json.body.type || '' }}"},
                {"name": "adapter", "value": "={{ $json.body.adapter || '' }}"}]),
              (680, -120), **cred_kw)
        w.add("Process document (text)", "n8n-nodes-base.httpRequest", 4.2, http(
            "POST", "={{ $json.base_url }}/v1/documents", auth,
            body="={{ JSON.stringify({ text: $json.body.text, type: $json.body.type || undefined, "
                 "adapter: $json.body.adapter || undefined, model: $json.body.model || undefined }) }}"),
              (680, 120), **cred_kw)
    w.add("Reply with the record", "n8n-nodes-base.respondToWebhook", 1.1,
          {"respondWith": "json",
           "responseBody": "={{ JSON.stringify(Object.assign({}, $json, { review_url: $json.status === 'pending_review' "
                           "? $execution.resumeFormUrl : null })) }}",
           "options": {}}, (920, 0))
    w.add("Held for review?", "n8n-nodes-base.if", 2.2,
          if_params("={{ $json.status }}", "string", "equals", "pending_review"), (1140, 0))
    w.add("Ask for a review", "n8n-nodes-base.httpRequest", 4.2, http(
        "POST", "={{ $('Settings').item.json.notify_url }}", None,
        body="={{ JSON.stringify({ event: 'document.review_requested', id: $json.id, doc_type: $json.doc_type, "
             "decision: $json.decision, fields: $json.fields, confidence: $json.confidence, flags: $json.flags, "
             "review_request: $json.review_request, review_url: $execution.resumeFormUrl, "
             "how_to_review: 'open review_url in a browser: a form with the fields to correct' }) }}",
        timeout_ms=30000), (1380, -160), onError="continueRegularOutput")
    w.add("Wait for the reviewer", "n8n-nodes-base.wait", 1.1, review_form(), (1600, -160),
          webhookId=nid(key, "wait-review"))
    if node:
        w.add("Send the review", TUNEBRIDGE, 1, {
            "resource": "document", "operation": "review", "documentId": "={{ $('Held for review?').item.json.id }}",
            "corrections": f"={{{{ {CORRECTIONS} }}}}", "decision": f"={{{{ {DECISION} }}}}",
            "note": f"={{{{ $json['{NOTE}'] || '' }}}}", "reviewer": f"={{{{ $json['{REVIEWER}'] || 'n8n form' }}}}",
            "options": {},
        }, (1820, -160), **cred_kw)
    else:
        w.add("Send the review", "n8n-nodes-base.httpRequest", 4.2, http(
            "POST", "={{ $('Settings').item.json.base_url }}/v1/documents/{{ $('Held for review?').item.json.id }}"
            "/review", auth, body=f"={{{{ JSON.stringify({{ fields: {CORRECTIONS}, decision: {DECISION} || undefined, "
            f"note: $json['{NOTE}'] || undefined, reviewer: $json['{REVIEWER}'] || 'n8n form' }}) }}}}"),
              (1820, -160), **cred_kw)
    w.add("Prepare the store line", "n8n-nodes-base.set", 3.4, set_node([
        assign("line", "={{ JSON.stringify({ stored_at: $now.toISO(), id: $json.id, doc_type: $json.doc_type, "
                       "status: $json.status, decision: $json.decision, fields: $json.fields, flags: $json.flags, "
                       "cached: $json.cached || false }) + '\\n' }}"),
        assign("record", "={{ $json }}", "object"),
    ]), (2060, 0))
    w.add("Convert to a JSON line", "n8n-nodes-base.convertToFile", 1.1,
          {"operation": "toText", "sourceProperty": "line", "binaryPropertyName": "data",
           "options": {"fileName": "documents.jsonl"}}, (2280, 0))
    w.add("Append to the store", "n8n-nodes-base.readWriteFile", 1,
          {"operation": "write", "fileName": "={{ $('Settings').item.json.store_dir }}/documents.jsonl",
           "dataPropertyName": "data", "options": {"append": True}}, (2500, 0))
    w.add("Notify: stored", "n8n-nodes-base.httpRequest", 4.2, http(
        "POST", "={{ $('Settings').item.json.notify_url }}", None,
        body="={{ JSON.stringify({ event: 'document.stored', store_file: $('Settings').item.json.store_dir + "
             "'/documents.jsonl', record: $('Prepare the store line').item.json.record }) }}", timeout_ms=30000),
          (2720, 0), onError="continueRegularOutput")

    w.chain("Document received", "Settings", "File uploaded?")
    w.link("File uploaded?", "Process document (file)", 0)
    w.link("File uploaded?", "Process document (text)", 1)
    w.link("Process document (file)", "Reply with the record")
    w.link("Process document (text)", "Reply with the record")
    w.link("Reply with the record", "Held for review?")
    w.link("Held for review?", "Ask for a review", 0)
    w.link("Held for review?", "Prepare the store line", 1)
    w.chain("Ask for a review", "Wait for the reviewer", "Send the review", "Prepare the store line",
            "Convert to a JSON line", "Append to the store", "Notify: stored")
    w.dump(filename, ["tunebridge", "documents"])


def signed_callback(w, wait, label, pos, creds):
    """Wait for a signed job callback: the Wait node keeps the raw body, a Crypto node computes the HMAC with
    the service's webhook secret, an IF compares it with `X-Tunebridge-Signature`. Returns the IF's name."""
    x, y = pos
    w.add(wait, "n8n-nodes-base.wait", 1.1,
          {"resume": "webhook", "httpMethod": "POST", "limitWaitTime": True, "limitType": "afterTimeInterval",
           "resumeAmount": 12, "resumeUnit": "hours", "options": {"rawBody": True}}, (x, y),
          webhookId=nid(w.key, wait))
    crypto = f"Sign the {label} callback"
    w.add(crypto, "n8n-nodes-base.crypto", 2,
          {"action": "hmac", "binaryData": True, "binaryPropertyName": "data", "type": "SHA256",
           "dataPropertyName": "expected_signature", "encoding": "hex"}, (x + 220, y),
          credentials=creds, onError="continueRegularOutput")  # a timed-out wait has no body to sign
    check = f"Signed by tunebridge? ({label})"
    w.add(check, "n8n-nodes-base.if", 2.2, if_params(
        "={{ !!$json.expected_signature && ('sha256=' + $json.expected_signature) === "
        "(($json.headers || {})['x-tunebridge-signature'] || '') }}", "boolean", "true"), (x + 440, y))
    w.chain(wait, crypto, check)
    return check


def training():
    key = "training"
    w = WF(key, "Tunebridge: continuous training")
    tb = {"credentials": CREDS["tunebridge"]}
    secret = {"crypto": {"id": "", "name": "Tunebridge webhook secret"}}
    w.note("Continuous training",
           "POST to `/webhook/tunebridge/train` (from a schedule, another workflow, or by hand):\n"
           "`{\"dataset\": \"corrections-receipt\", \"eval_dataset\": \"receipts-eval\", \"adapter_name\": \"receipts\", "
           "\"alias\": \"prod\", \"min_gain\": 0, \"max_field_drop\": 0.05, \"hyperparameters\": {\"epochs\": 2}, "
           "\"eval_limit\": 0, \"notify_url\": \"https://...\"}` (all optional).\n\n"
           "**Start training** queues a train job whose `callback_url` is this execution's resume URL "
           "(`$execution.resumeUrl`): the service POSTs the finished job there and **Wait for training** resumes.",
           (-80, -400), width=560, height=300)
    w.note("Signed callbacks",
           "The service signs every callback: `X-Tunebridge-Signature: sha256=<HMAC-SHA256 of the raw body>` with its "
           "`TUNEBRIDGE_WEBHOOK_SECRET`. Create a **Crypto** credential named *Tunebridge webhook secret* whose HMAC "
           "secret is that value. Each Wait node keeps the raw body; a callback whose signature does not match (or a "
           "wait that timed out) is refused and reported, never acted on.",
           (660, -400), width=520, height=260, color=3)
    w.note("Eval-gated promotion",
           "**Evaluation → Run** scores the new version on the held-out dataset against the version the alias points "
           "at now. The service moves the alias only when the candidate is not worse (`min_gain`, `max_field_drop`); "
           "the decision and its reasons come back in the eval job's callback.\n\nPromoted → the alias is read back and "
           "announced; refused → **Get Report** fetches the report and it is sent with the scores.",
           (1740, -400), width=560, height=280, color=5)
    w.add("Training requested", "n8n-nodes-base.webhook", 2.1,
          {"httpMethod": "POST", "path": "tunebridge/train", "responseMode": "responseNode", "options": {}},
          (0, 0), webhookId=nid(key, "webhook-id"))
    b = "($json.body || {})"
    w.add("Settings", "n8n-nodes-base.set", 3.4, set_node([
        assign("dataset", f"={{{{ {b}.dataset || 'corrections-receipt' }}}}"),
        assign("eval_dataset", f"={{{{ {b}.eval_dataset || 'receipts-eval' }}}}"),
        assign("adapter_name", f"={{{{ {b}.adapter_name || {b}.dataset || 'receipts' }}}}"),
        assign("alias", f"={{{{ {b}.alias || 'prod' }}}}"),
        assign("min_gain", f"={{{{ {b}.min_gain ?? 0 }}}}", "number"),
        assign("max_field_drop", f"={{{{ {b}.max_field_drop ?? 0.05 }}}}", "number"),
        assign("hyperparameters", f"={{{{ {b}.hyperparameters || {{ epochs: 2 }} }}}}", "object"),
        assign("eval_limit", f"={{{{ {b}.eval_limit ?? 0 }}}}", "number"),
        assign("notify_url", f"={{{{ {b}.notify_url || 'http://127.0.0.1:5678/webhook/tunebridge-notifications' }}}}"),
    ]), (220, 0))
    w.add("Start training", TUNEBRIDGE, 1,
          {"resource": "training", "operation": "startJob", "kind": "train", "dataset": "={{ $json.dataset }}",
           "adapterName": "={{ $json.adapter_name }}", "hyperparameters": "={{ JSON.stringify($json.hyperparameters) }}",
           "options": {"callbackUrl": "={{ $execution.resumeUrl }}"}}, (440, 0), **tb)
    w.add("Reply with the job", "n8n-nodes-base.respondToWebhook", 1.1,
          {"respondWith": "json",
           "responseBody": "={{ JSON.stringify({ train_job: $json, resume_url: $execution.resumeUrl }) }}",
           "options": {"responseCode": 202}}, (660, 0))
    signed_train = signed_callback(w, "Wait for training", "training", (880, 0), secret)
    w.add("Training succeeded?", "n8n-nodes-base.if", 2.2,
          if_params("={{ (($json.body || {}).job || {}).status }}", "string", "equals", "succeeded"), (1540, 0))
    w.add("Evaluate and gate", TUNEBRIDGE, 1,
          {"resource": "evaluation", "operation": "run", "dataset": "={{ $('Settings').item.json.eval_dataset }}",
           "adapters": "={{ $json.body.job.result.adapter }}", "includeBase": False, "promote": True,
           "promoteAlias": "={{ $('Settings').item.json.alias }}", "minGain": "={{ $('Settings').item.json.min_gain }}",
           "maxFieldDrop": "={{ $('Settings').item.json.max_field_drop }}",
           "options": {"callbackUrl": "={{ $execution.resumeUrl }}",
                       "exampleLimit": "={{ $('Settings').item.json.eval_limit }}"}}, (1760, -120), **tb)
    signed_eval = signed_callback(w, "Wait for evaluation", "evaluation", (1980, -120), secret)
    w.add("Promoted?", "n8n-nodes-base.if", 2.2,
          if_params("={{ (((($json.body || {}).job || {}).result || {}).promotion || {}).promote === true }}",
                    "boolean", "true"), (2640, -120))
    w.add("Check the alias", TUNEBRIDGE, 1,
          {"resource": "adapter", "operation": "get",
           "ref": "={{ $('Settings').item.json.adapter_name }}@{{ $('Settings').item.json.alias }}"}, (2860, -240), **tb)
    w.add("Notify: promoted", "n8n-nodes-base.httpRequest", 4.2, http(
        "POST", "={{ $('Settings').item.json.notify_url }}", None,
        body="={{ JSON.stringify({ event: 'training.promoted', adapter: $json.id, alias: $('Settings').item.json.alias, "
             "train_job: $('Wait for training').item.json.body.job.id, eval_job: $('Wait for evaluation').item.json.body.job.id, "
             "decision: $('Wait for evaluation').item.json.body.job.result.promotion }) }}", timeout_ms=30000),
          (3080, -240), onError="continueRegularOutput")
    w.add("Get the report", TUNEBRIDGE, 1,
          {"resource": "evaluation", "operation": "getReport", "jobId": "={{ $json.body.job.id }}",
           "include": ["report"]}, (2860, 0), onError="continueRegularOutput", **tb)
    job = "($('Wait for evaluation').item.json.body.job || {})"
    w.add("Notify: not promoted", "n8n-nodes-base.httpRequest", 4.2, http(
        "POST", "={{ $('Settings').item.json.notify_url }}", None,
        body=f"={{{{ JSON.stringify({{ event: 'training.not_promoted', eval_job: {job}.id, status: {job}.status, "
             f"error: {job}.error || null, decision: ({job}.result || {{}}).promotion || null, "
             f"scores: ({job}.result || {{}}).candidates || null, artifacts: ({job}.result || {{}}).artifacts || [], "
             "report: $json.report || null }) }}", timeout_ms=30000),
          (3080, 0), onError="continueRegularOutput")
    w.add("Notify: training failed", "n8n-nodes-base.httpRequest", 4.2, http(
        "POST", "={{ $('Settings').item.json.notify_url }}", None,
        body="={{ JSON.stringify({ event: 'training.failed', job: ($json.body || {}).job || null }) }}",
        timeout_ms=30000), (1760, 160), onError="continueRegularOutput")
    w.add("Notify: callback refused", "n8n-nodes-base.httpRequest", 4.2, http(
        "POST", "={{ $('Settings').item.json.notify_url }}", None,
        body="={{ JSON.stringify({ event: 'training.callback_refused', step: $prevNode.name, "
             "timed_out: !$json.headers, job_id: (($json.body || {}).job || {}).id || null, "
             "reason: !$json.headers ? 'no callback before the wait timed out' : "
             "($json.headers['x-tunebridge-signature'] ? 'signature does not match the body' : "
             "'no X-Tunebridge-Signature header') }) }}", timeout_ms=30000),
          (1540, 320), onError="continueRegularOutput")
    w.chain("Training requested", "Settings", "Start training", "Reply with the job", "Wait for training")
    w.link(signed_train, "Training succeeded?", 0)
    w.link(signed_train, "Notify: callback refused", 1)
    w.link("Training succeeded?", "Evaluate and gate", 0)
    w.link("Training succeeded?", "Notify: training failed", 1)
    w.link("Evaluate and gate", "Wait for evaluation")
    w.link(signed_eval, "Promoted?", 0)
    w.link(signed_eval, "Notify: callback refused", 1)
    w.link("Promoted?", "Check the alias", 0)
    w.link("Promoted?", "Get the report", 1)
    w.link("Check the alias", "Notify: promoted")
    w.link("Get the report", "Notify: not promoted")
    w.dump("continuous-training.json", ["tunebridge", "training"])


def nightly():
    """Scheduled (or CLI) quality check of the adapter in production, waiting by polling: no public URL."""
    key = "nightly"
    w = WF(key, "Tunebridge: nightly evaluation")
    tb = {"credentials": CREDS["tunebridge"]}
    w.note("Nightly evaluation",
           "Every night at 02:00 once active, or now: *Execute workflow* in the editor, or `n8n execute --id "
           "<workflow id>` from a shell or a cron job (the CLI wants a manual trigger in the workflow: **Run now**). It "
           "scores the adapter in production (`adapter`, e.g. `receipts@prod`) and the base model on the "
           "held-out dataset.\n\n**Training → Wait for Job** polls the job (every `poll_seconds`, 10 s, up to 2 h): nothing has to "
           "reach this n8n from outside. **Get Report** fetches the Markdown report and the scores; below "
           "`min_f1` the notification says `evaluation.below_bar`, else `evaluation.done`.",
           (-80, -380), width=560, height=300)
    w.add("Every night", "n8n-nodes-base.scheduleTrigger", 1.2,
          {"rule": {"interval": [{"field": "days", "triggerAtHour": 2}]}}, (0, -60))
    w.add("Run now", "n8n-nodes-base.manualTrigger", 1, {}, (0, 140))  # `n8n execute` needs one to start
    w.add("Settings", "n8n-nodes-base.set", 3.4, set_node([
        assign("adapter", "receipts@prod"),
        assign("eval_dataset", "receipts-eval"),
        assign("eval_limit", "0", "number"),
        assign("min_f1", "0.8", "number"),
        assign("poll_seconds", "10", "number"),
        assign("notify_url", "http://127.0.0.1:5678/webhook/tunebridge-notifications"),
    ]), (240, 40))
    w.add("Evaluate the adapter", TUNEBRIDGE, 1,
          {"resource": "evaluation", "operation": "run", "dataset": "={{ $json.eval_dataset }}",
           "adapters": "={{ $json.adapter }}", "includeBase": True,
           "options": {"exampleLimit": "={{ $json.eval_limit }}"}}, (460, 40), **tb)
    w.add("Wait for the evaluation", TUNEBRIDGE, 1,
          {"resource": "training", "operation": "waitForJob", "jobId": "={{ $json.id }}",
           "pollInterval": "={{ $('Settings').item.json.poll_seconds }}", "timeoutMinutes": 120}, (680, 40), **tb)
    w.add("Get the report", TUNEBRIDGE, 1,
          {"resource": "evaluation", "operation": "getReport", "jobId": "={{ $json.id }}",
           "include": ["report", "eval"]}, (900, 40), **tb)
    w.add("Scores", "n8n-nodes-base.set", 3.4, set_node([
        assign("adapter_f1", "={{ (Object.entries($json.eval.candidates).find(([k]) => k !== 'base' && "
                             "k.startsWith($('Settings').item.json.adapter.split('@')[0] + '@')) || [null, { extraction: "
                             "{ micro: { f1: null } } }])[1].extraction.micro.f1 }}", "number"),
        assign("base_f1", "={{ (($json.eval.candidates.base || {}).extraction || { micro: {} }).micro.f1 ?? null }}",
               "number"),
    ], include_other=True), (1120, 40))
    w.add("Below the bar?", "n8n-nodes-base.if", 2.2, if_params(
        "={{ $json.adapter_f1 === null || $json.adapter_f1 < $('Settings').item.json.min_f1 }}", "boolean", "true"),
          (1340, 40))
    for name, event, y in (("Notify: below the bar", "evaluation.below_bar", -60), ("Notify: done", "evaluation.done", 140)):
        w.add(name, "n8n-nodes-base.httpRequest", 4.2, http(
            "POST", "={{ $('Settings').item.json.notify_url }}", None,
            body=f"={{{{ JSON.stringify({{ event: '{event}', adapter: $('Settings').item.json.adapter, "
                 "eval_job: $json.job_id, adapter_f1: $json.adapter_f1, base_f1: $json.base_f1, "
                 "min_f1: $('Settings').item.json.min_f1, report: $json.report }) }}", timeout_ms=30000),
              (1580, y), onError="continueRegularOutput")
    w.link("Every night", "Settings")
    w.link("Run now", "Settings")
    w.chain("Settings", "Evaluate the adapter", "Wait for the evaluation", "Get the report", "Scores", "Below the bar?")
    w.link("Below the bar?", "Notify: below the bar", 0)
    w.link("Below the bar?", "Notify: done", 1)
    w.dump("nightly-evaluation.json", ["tunebridge", "evaluation"])


def agent():
    """n8n's AI Agent (tools agent) on tunebridge's OpenAI-compatible API, with the Tunebridge node as its tool."""
    key = "agent"
    w = WF(key, "Tunebridge: AI agent with the extraction tool")
    w.note("AI agent",
           "`POST /webhook/tunebridge/agent` with `{\"text\": \"<receipt text>\"}` (optionally `\"request\"`: what to "
           "ask). The **AI Agent** talks to tunebridge through n8n's **OpenAI Chat Model**: its credential (type "
           "*OpenAI*) has the **Base URL** `<tunebridge>/v1` and a tunebridge API key, and **Settings** names the "
           "model (an adapter such as `receipts@prod`, or a base model). tunebridge decodes the model's tool calls "
           "under the tools' schemas, so every call is valid even from a small model.\n\nThe **Tunebridge Tool** "
           "(the community node used as a tool: *Document → Extract*, preset receipt) reads the receipt text the "
           "model passes (`$fromAI('text')`) and returns the fields. *Force Tool Call on First Iteration* makes the "
           "first answer a call (small models often skip it); later answers are the model's choice. The webhook "
           "answers the agent's output and its steps (each tool call and what it returned).\n\nCommunity nodes are "
           "tools only with `N8N_COMMUNITY_PACKAGES_ALLOW_TOOL_USAGE=true`.",
           (-80, -420), width=640, height=360)
    w.add("Receipt in", "n8n-nodes-base.webhook", 2,
          {"httpMethod": "POST", "path": "tunebridge/agent", "responseMode": "lastNode", "options": {}}, (0, 40),
          webhookId=nid(key, "webhook"))
    w.add("Settings", "n8n-nodes-base.set", 3.4, set_node([
        assign("model", "receipts@prod"),
        assign("text", "={{ $json.body.text }}"),
        assign("request", "={{ $json.body.request || 'Extract the fields from this receipt with the tool, then "
                          "give the total.' }}"),
    ]), (220, 40))
    w.add("AI Agent", "@n8n/n8n-nodes-langchain.agent", 3.1, {
        "promptType": "define",
        "text": "={{ $json.request }}\n\nReceipt:\n{{ $json.text }}",
        "options": {
            "systemMessage": "You help a bookkeeper. Use the tool to read receipts; answer briefly.",
            "maxIterations": 4,
            "returnIntermediateSteps": True,
            "forceToolCallOnFirstIteration": True,
        },
    }, (460, 40))
    w.add("OpenAI Chat Model", "@n8n/n8n-nodes-langchain.lmChatOpenAi", 1.2, {
        "model": {"__rl": True, "mode": "id", "value": "={{ $json.model }}"},
        "options": {"maxTokens": 256, "temperature": 0, "maxRetries": 0, "timeout": 300000},
    }, (380, 280), credentials=CREDS["openai"])
    w.add("Tunebridge Tool", TUNEBRIDGE + "Tool", 2, {
        "descriptionType": "manual",
        "toolDescription": "Extract the fields (company, date, address, total) from the text of a receipt",
        "resource": "document",
        "operation": "extract",
        "inputSource": "text",
        "text": "={{ $fromAI('text', 'The text of the receipt, exactly as given', 'string') }}",
        "schemaSource": "preset",
        "preset": "receipt",
        "options": {},
    }, (620, 280), credentials=CREDS["tunebridge"])
    w.add("Answer", "n8n-nodes-base.set", 3.4, set_node([
        assign("output", "={{ $json.output }}"),
        assign("steps", "={{ ($json.intermediateSteps || []).map(s => ({ tool: s.action.tool, input: "
                        "s.action.toolInput, output: s.observation })) }}", "array"),
    ]), (760, 40))
    w.chain("Receipt in", "Settings", "AI Agent", "Answer")
    w.conn["OpenAI Chat Model"] = {"ai_languageModel": [[{"node": "AI Agent", "type": "ai_languageModel", "index": 0}]]}
    w.conn["Tunebridge Tool"] = {"ai_tool": [[{"node": "AI Agent", "type": "ai_tool", "index": 0}]]}
    w.dump("ai-agent.json", ["tunebridge", "agent"])


intake("tunebridge", "intake", "document-intake.json", "Tunebridge: document intake", "tunebridge/documents",
       "tunebridge/upload")
intake("header", "intake-http", "document-intake-http.json", "Tunebridge: document intake (HTTP only)",
       "tunebridge/documents-http", "tunebridge/upload-http")
training()
nightly()
agent()

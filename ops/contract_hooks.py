"""Schemathesis hooks for ops/contract.sh.

Every command needs an Idempotency-Key that is unique per command (docs/api.md): a real
client sends a fresh UUID with each one. Schemathesis draws header values from the
document, and its draws repeat, so two different commands would share a key and be
refused as a reused key (422), which says nothing about the data sent. A request whose
data is meant to be valid therefore gets a fresh UUID; requests meant to be invalid keep
the drawn value, so a malformed or missing key is still tested.
"""

import uuid

import schemathesis

KEY = "Idempotency-Key"


@schemathesis.hook
def before_call(context, case, kwargs):
    meta = case.meta
    positive = meta is not None and meta.generation.mode.is_positive
    if positive and case.headers and KEY in case.headers:
        case.headers[KEY] = str(uuid.uuid4())

"""The team cache: action results shared through a remote object store, signed and verified.

A local miss asks the remote (``cache.fetch``): an entry is used only if its DSSE signature
verifies against a trusted ed25519 key and every blob it names hashes to its cid while it is
downloaded into the local CAS. A successful miss is published (``cache.publish``) when this
client may upload: blobs first, the signed entry last. Remote trouble never fails a run: it costs
at most the configured timeouts and one warning. BUILD.md, "Team cache", is the full contract.

Modules: ``config`` (URL, trust, upload, timeouts; credentials only from the environment),
``layout`` (paths and the signed payload on the remote, versioned), ``client`` (the one
obstore-backed store: bounded timeouts and retries, streaming transfers), ``cache`` (fetch and
publish). obstore is imported only when a remote is used, never on a local hit.
"""

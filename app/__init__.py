"""fleetpulse server. The folders are the data flow:

``ingest`` (wire decoders -> one normalized ``Batch``) -> ``core`` (the pure numpy engine and the
records) -> ``storage`` (one write protocol, backends that implement its primitives) -> ``web``
(Flask: the app factory, auth, views). Only ``web`` knows Flask.
"""

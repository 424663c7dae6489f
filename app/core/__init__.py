"""The core: numpy only. The engine, the merge-state codec, the records and the domain errors.

It imports nothing else of fleetpulse and nothing of Flask, HTTP or any store.
"""

"""fleetpulse host agent and in-process probe (CONTRACT.md section 7).

Nothing happens at import time: `python -m agent` runs the agent, and
`from agent import probe; probe.start(service=...)` starts the in-process probe.
"""

__version__ = "0.1.0"

# fleetpulse: one image for the API (default command) and the host agent
# (`python -m agent`, see docker-compose.yml).
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FLEETPULSE_BIND=0.0.0.0:8000 \
    FLEETPULSE_METADATA_URL=sqlite:////data/meta.db \
    FLEETPULSE_SPOOL_DIR=/spool

WORKDIR /app

# A fixed, unprivileged user; /data (API metadata) and /spool (agent) belong to it so
# that fresh named volumes mounted there inherit the ownership.
RUN groupadd --system --gid 10001 fleetpulse \
    && useradd --system --uid 10001 --gid fleetpulse --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin fleetpulse \
    && mkdir -p /data /spool \
    && chown fleetpulse:fleetpulse /data /spool

COPY requirements.txt requirements-agent.txt ./
RUN pip install --no-cache-dir -r requirements.txt -r requirements-agent.txt

COPY app/ ./app/
COPY agent/ ./agent/
COPY gunicorn.conf.py ./
COPY deploy/agent_healthcheck.py ./deploy/agent_healthcheck.py

USER fleetpulse:fleetpulse
EXPOSE 8000

# slim images have no curl: ask /readyz (storage reachable) with the standard library.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status == 200 else 1)"]

CMD ["gunicorn", "-c", "gunicorn.conf.py"]

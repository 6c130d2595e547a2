# The gateway alone; docker-compose.yml adds Redis (AOF on).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY config ./config
# Not editable: the image runs the installed package (abi/, store/lua/ are package data); the
# config file is read from /app/config. No dev stack: devstack/ is not copied.
ENV GATEWAY_CONFIG=/app/config/gateway.toml
# The ledger archive (compacted entries, docs/PAYMENTS.md section 9) is written by the gateway
# user; docker-compose.yml mounts a volume there.
RUN pip install --no-cache-dir '.[server]' && useradd --create-home gateway \
    && mkdir -p /app/data/ledger-archive && chown gateway /app/data/ledger-archive
USER gateway

EXPOSE 8402
HEALTHCHECK --interval=15s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8402/health')"
CMD ["python", "-m", "gateway", "serve", "--host", "0.0.0.0", "--port", "8402"]

FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY domain domain
COPY application application
COPY ingest ingest
COPY projections projections
COPY api api
COPY infra infra
RUN pip install --no-cache-dir .
RUN useradd --system ledger
USER ledger
EXPOSE 8000
CMD ["ledger", "api", "--host", "0.0.0.0", "--port", "8000"]

# icpns-stream: the engine, the CLI and the Kafka consumer service.
#   docker build -t icpns-stream .
#   docker run --rm icpns-stream --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY icpns_stream ./icpns_stream
COPY consumers ./consumers
RUN pip install .

# Not root; /state holds the consumer's checkpoints (a volume in compose).
RUN useradd --create-home --uid 10001 icpns \
    && mkdir /state \
    && chown icpns /state
USER icpns
VOLUME ["/state"]
EXPOSE 9464

ENTRYPOINT ["icpns-stream"]
CMD ["--help"]

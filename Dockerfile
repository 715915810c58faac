FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir '.[postgres]'
COPY templates ./templates
COPY examples ./examples
# config/ is mounted by docker-compose; relative paths resolve against /app.
ENV NEWSBROADCAST_CONFIG=/app/config/newsbroadcast.yaml
ENTRYPOINT ["newsbroadcast"]
CMD ["run"]

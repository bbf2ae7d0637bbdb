"""HTTP front of the inference server: one module per route group, assembled by `assembly.create_app`.

- `embeddings.py`: `POST /v1/embeddings`, the hot path (admission, queueing, the answer).
- `model_list.py`: `GET /v1/models` and `GET /v1/models/{id}`.
- `probes.py`: `GET /healthz`, `GET /ready`, `GET /metrics`.
- `front_context.py`: what the routes share (the backend, metrics, model name, readiness, a refusal).
- `assembly.py`: the Starlette app, its lifespan (start-up, shutdown), OpenAI-shaped 404/405/500.
"""

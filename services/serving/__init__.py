"""Serving: answers predictions with the champion of every model that has one, swaps to a new
champion the moment the registry promotes it (models.lifecycle), and logs every prediction it
makes (PredictionServed on serving.predictions) for monitoring, without waiting for Kafka.

    POST /predict  {"model": "loans", "records": [{...}]} or {"model": "loans", "entities": [...]}
    GET  /models   the versions answering (champion) and shadowing (challenger) each model

Which models: every one, found at runtime. At start-up the models.lifecycle consumer is
positioned at the topic's end, then the registry is asked for every model and its aliases
(GET /models) and each champion is recorded (loaded while memory has room); later, a promotion or rollback of a model serving
has never seen loads that model, with no restart. MLOPS_SERVING_MODELS (optional) restricts
the set. /ready is 503 until the registry's list was read and while a champion serving knows
of is not loaded (loading, retried, refused); a model without champion is not an outage
(/predict answers 404 "no champion for model 'x' yet"). A version loads completely before it
takes traffic: its registry record (dataset, spec version, feature columns), the artifact
from MinIO (sha256 checked, skops, no pickle; HistGradientBoosting trees checked for
out-of-bounds nodes), its dataset spec, a warm-up on sample records built from the spec;
then a reference swap. A refused version (tampered, untrusted, unloadable, failing its
warm-up) is logged and counted, and the old model keeps serving.

Requests are checked against the dataset spec of the model's training (422 with every field
error), scored in batches with the other requests waiting at the time, on the event loop,
and answered per record with the prediction, the class probabilities, model, version,
request id and record id. With MLOPS_SERVING_SHADOW=true the challenger scores the same
records behind the answer, logged with shadow=true.

Many models, bounded memory: champions load on demand and the least recently used are
evicted. A champion loads on its first request, or at its promotion when the model is loaded
already (a hot swap: load, then swap the reference; zero failed requests) or when it fits
without evicting anything (start-up and promotions use the free room, never evict for it).
A promotion of a model that is not loaded is only recorded; its next request loads the new
version. A request for a model not in memory waits for its load (concurrent requests share
one load) at most MLOPS_SERVING_MODEL_LOAD_TIMEOUT_S (30 s), then answers 503 with the reason,
as it does at once when the load fails or the version was refused. Loaded models hold at most
MLOPS_SERVING_MODEL_MEMORY_MB (2048) and, if set, MLOPS_SERVING_MAX_LOADED_MODELS models;
before a load, the least recently used models without a request in flight are evicted to make
room for its estimate, and once loaded its measured size is recorded (more are evicted if the
estimate fell short). Size is the retained size of the estimator's object graph (sys.getsizeof
over every reachable object, numpy buffers once, Cython trees through their pickled state:
domain/sizes.py; within 1% of tracemalloc for a HistGradientBoosting pipeline). Challengers
(shadow mode) always load and are never evicted; they count against the limit. An evicted
model keeps its champion version and is loaded again by its next request; ModelDeployed is
announced once per version and instance, not at every reload. GET /memory and /metrics
(mlops_serving_models_memory_used_bytes, _limit_bytes, mlops_serving_model_memory_bytes,
mlops_serving_evictions_total, mlops_serving_cold_loads_total, mlops_serving_cold_load_seconds)
show what is loaded, its size, the bytes used against the limit, loads and evictions.
/ready no longer waits for every champion to be in memory: it is 503 while a champion serving
knows of cannot answer (refused, or failing to load with nothing else to serve).

Layout: domain/ (records, values, samples, served models, slots and their swap rules, jobs,
answers, tree checks, eviction policy, retained sizes), adapters/ (registry and feature store over HTTP, MinIO, spec registry,
Kafka prediction log), loading.py (loader, start-up lookup, deferred retries), memory.py (loaded models' sizes, use
and evictions), lazy.py (loads on request),
predictions.py (batcher, shadow scorer, the /predict use case), handlers.py (lifecycle route,
PredictionServed), http.py, bootstrap.py.
"""

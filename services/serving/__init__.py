"""Serving: answers predictions with the champion of every model that has one, swaps to a new
champion the moment the registry promotes it (models.lifecycle), and logs every prediction it
makes (PredictionServed on serving.predictions) for monitoring, without waiting for Kafka.

    POST /predict  {"model": "loans", "records": [{...}]} or {"model": "loans", "entities": [...]}
    GET  /models   the versions answering (champion) and shadowing (challenger) each model

Which models: every one, found at runtime. At start-up the models.lifecycle consumer is
positioned at the topic's end, then the registry is asked for every model and its aliases
(GET /models) and each champion is loaded; later, a promotion or rollback of a model serving
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

Layout: domain/ (records, values, samples, served models, slots and their swap rules, jobs,
answers, tree checks), adapters/ (registry and feature store over HTTP, MinIO, spec registry,
Kafka prediction log), loading.py (loader, start-up lookup, deferred retries),
predictions.py (batcher, shadow scorer, the /predict use case), handlers.py (lifecycle route,
PredictionServed), http.py, bootstrap.py.
"""

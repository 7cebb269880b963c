// Chunk vectors in an external Qdrant cluster (or anything speaking its REST API, such as
// another `etna serve`), over libcurl. The collection has one named dense vector "dense"
// (cosine, the model's dimension); point ids are the catalogue's chunk ids and point 0 (no
// vector) carries VectorMeta as its payload ({"etna_meta": {"model", "dim", "catalog"}}).
// Requests carry the `api-key` header; TLS peers are verified ($ETNA_VECTOR_STORE_CA names a CA
// bundle for a private CA). Connection errors and 5xx answers are retried with doubling
// back-off; failures throw etna::Error naming the URL and Qdrant's own error text, never the key:
// unavailable (unreachable, refused key, 5xx), invalid_argument / conflict (see VectorBackend),
// internal (any other answer, or one not of the expected shape); an answer over
// VectorStoreOptions::max_response_bytes is cut off (unavailable). A key sent over plain http://
// to another machine is warned about once.
#pragma once
#include <memory>
#include <string>

#include "etna/rag/vector_backend.h"

namespace etna::rag {

// REQUIRES: options.url normalised (normalise_store_url), not "builtin". Connects lazily.
std::unique_ptr<VectorBackend> open_qdrant_backend(const VectorStoreOptions& options, const std::string& collection);

}  // namespace etna::rag

// --vector-store URL and --vector-store-key KEY, shared by the commands that ingest, search, ask
// and serve documents. The key may come from $ETNA_VECTOR_STORE_KEY instead, so it is not in the
// process list; the URL defaults to the store each collection's catalogue records.
#pragma once
#include <cstdlib>

#include <CLI/CLI.hpp>

#include "etna/rag/vector_backend.h"

namespace etna::cli {

inline void add_vector_store_options(CLI::App* c, rag::VectorStoreOptions& o) {
  c->add_option("--vector-store", o.url,
                "keep or find the chunk vectors in this Qdrant API (http(s)://host:6333) instead of the built-in "
                "store; 'builtin' moves them back (default: where the collection's catalogue says they are)");
  c->add_option("--vector-store-key", o.api_key,
                "API key of --vector-store, sent as the api-key header; visible to other users in `ps`, so prefer "
                "$ETNA_VECTOR_STORE_KEY (the default)");
}

// Call in the command's callback: fills the key from the environment when not given.
inline void finish_vector_store_options(rag::VectorStoreOptions& o) {
  if (o.api_key.empty())
    if (const char* k = std::getenv("ETNA_VECTOR_STORE_KEY"); k && *k) o.api_key = k;
}

}  // namespace etna::cli

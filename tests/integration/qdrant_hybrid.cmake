# The official Qdrant JS client against a real `etna serve`: named/sparse vectors, Query API,
# groups, aliases, PATCH, text/datetime indexes, kill -9 (tests/clients/qdrant_hybrid.test.mjs).
find_program(ETNA_NODE node)
set(_clients_dir ${PROJECT_SOURCE_DIR}/tests/clients)
add_test(NAME qdrant_hybrid_js_client
  COMMAND ${CMAKE_COMMAND}
    -DNODE=${ETNA_NODE}
    -DCLIENTS_DIR=${_clients_dir}
    -DETNA_BINARY=$<TARGET_FILE:etna>
    -DSUITE=qdrant_hybrid.test.mjs
    -P ${_clients_dir}/run-node-suite.cmake)
set_tests_properties(qdrant_hybrid_js_client PROPERTIES TIMEOUT 600 LABELS "integration;clients")

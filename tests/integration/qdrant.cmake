# The official Qdrant JS client against a real `etna serve` (tests/clients/qdrant.test.mjs).
# Needs node and tests/clients/node_modules (scripts/test-clients-setup installs them from the
# lockfile); without them the test fails and says so rather than passing silently.
find_program(ETNA_NODE node)
set(_clients_dir ${PROJECT_SOURCE_DIR}/tests/clients)
add_test(NAME qdrant_js_client
  COMMAND ${CMAKE_COMMAND}
    -DNODE=${ETNA_NODE}
    -DCLIENTS_DIR=${_clients_dir}
    -DETNA_BINARY=$<TARGET_FILE:etna>
    -DSUITE=qdrant.test.mjs
    -P ${_clients_dir}/run-node-suite.cmake)
set_tests_properties(qdrant_js_client PROPERTIES TIMEOUT 600 LABELS "integration;clients")

# The official OpenAI JS client against a real `etna serve -m stories260K.gguf`
# (tests/clients/openai.test.mjs). Needs node and tests/clients/node_modules (scripts/test-clients-setup);
# the suite skips, saying so, when the shared models are absent.
find_program(ETNA_NODE node)
add_test(NAME openai_js_client
  COMMAND ${CMAKE_COMMAND}
    -DNODE=${ETNA_NODE}
    -DCLIENTS_DIR=${PROJECT_SOURCE_DIR}/tests/clients
    -DETNA_BINARY=$<TARGET_FILE:etna>
    -DSHARED_DIR=${ETNA_SHARED_DIR}
    -DSUITE=openai.test.mjs
    -P ${PROJECT_SOURCE_DIR}/tests/clients/run-node-suite.cmake)
set_tests_properties(openai_js_client PROPERTIES TIMEOUT 900 LABELS "integration;clients")

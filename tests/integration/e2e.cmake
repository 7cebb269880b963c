# The web app end to end in Chromium (tests/e2e/webapp.test.mjs): playwright-core from
# tests/clients/node_modules (scripts/test-clients-setup) drives /usr/bin/chromium against a real
# `etna serve -m stories260K.gguf`. Screenshots land in <build>/e2e-artifacts/. Skips, saying so,
# without ../shared or Chromium.
find_program(ETNA_NODE node)
add_test(NAME webapp_e2e
  COMMAND ${CMAKE_COMMAND}
    -DNODE=${ETNA_NODE}
    -DCLIENTS_DIR=${PROJECT_SOURCE_DIR}/tests/clients
    -DETNA_BINARY=$<TARGET_FILE:etna>
    -DSHARED_DIR=${ETNA_SHARED_DIR}
    -DSUITE=${PROJECT_SOURCE_DIR}/tests/e2e/webapp.test.mjs
    -P ${PROJECT_SOURCE_DIR}/tests/clients/run-node-suite.cmake)
set_tests_properties(webapp_e2e PROPERTIES TIMEOUT 600 LABELS "integration;e2e")
# The rough edges a newcomer met (issue 16, item 19): names, uploads, search hits, tables, Ask's
# no-citation notice, scrolling, chat errors, and sign-in on a server with --api-key.
add_test(NAME webapp_newcomer_e2e
  COMMAND ${CMAKE_COMMAND}
    -DNODE=${ETNA_NODE}
    -DCLIENTS_DIR=${PROJECT_SOURCE_DIR}/tests/clients
    -DETNA_BINARY=$<TARGET_FILE:etna>
    -DSHARED_DIR=${ETNA_SHARED_DIR}
    -DSUITE=${PROJECT_SOURCE_DIR}/tests/e2e/webapp_newcomer.test.mjs
    -P ${PROJECT_SOURCE_DIR}/tests/clients/run-node-suite.cmake)
set_tests_properties(webapp_newcomer_e2e PROPERTIES TIMEOUT 600 LABELS "integration;e2e")

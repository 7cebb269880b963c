# The web app's Models page end to end in Chromium (tests/e2e/models.test.mjs) against a local
# hub server the suite starts. Needs scripts/test-clients-setup; skips without ../shared or Chromium.
find_program(ETNA_NODE node)
add_test(NAME models_e2e
  COMMAND ${CMAKE_COMMAND}
    -DNODE=${ETNA_NODE}
    -DCLIENTS_DIR=${PROJECT_SOURCE_DIR}/tests/clients
    -DETNA_BINARY=$<TARGET_FILE:etna>
    -DSHARED_DIR=${ETNA_SHARED_DIR}
    -DSUITE=${PROJECT_SOURCE_DIR}/tests/e2e/models.test.mjs
    -P ${PROJECT_SOURCE_DIR}/tests/clients/run-node-suite.cmake)
set_tests_properties(models_e2e PROPERTIES TIMEOUT 600 LABELS "integration;e2e")

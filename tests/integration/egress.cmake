# Zero egress (issue 16 item 17): `etna serve` (chat, embeddings, documents ingest/search/ask, the
# web app in Chromium) and the CLI commands run with an LD_PRELOAD recorder
# (tests/support/egress_recorder.c) that logs and refuses every connect/sendto/sendmsg to a
# non-loopback address and every host-name lookup made by an etna process. The test fails on any
# entry. A positive control shows the recorder sees `etna pull` reaching for the hub.
# (An LD_PRELOAD recorder needs no privileges, unlike `unshare -n`, so it runs in CI containers.)
add_library(etna_egress_recorder SHARED ${CMAKE_CURRENT_LIST_DIR}/../support/egress_recorder.c)
target_link_libraries(etna_egress_recorder PRIVATE ${CMAKE_DL_LIBS})
find_program(ETNA_NODE node)
add_test(NAME zero_egress
  COMMAND ${CMAKE_COMMAND}
    -DNODE=${ETNA_NODE}
    -DCLIENTS_DIR=${PROJECT_SOURCE_DIR}/tests/clients
    -DETNA_BINARY=$<TARGET_FILE:etna>
    -DSHARED_DIR=${ETNA_SHARED_DIR}
    -DRECORDER=$<TARGET_FILE:etna_egress_recorder>
    -DWEBAPP_SUITE=${PROJECT_SOURCE_DIR}/tests/e2e/webapp.test.mjs
    -DLOG=${CMAKE_CURRENT_BINARY_DIR}/zero-egress.log
    -P ${PROJECT_SOURCE_DIR}/tests/clients/run-egress-suite.cmake)
set_tests_properties(zero_egress PROPERTIES TIMEOUT 900 LABELS "integration;egress")

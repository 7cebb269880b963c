# The official clients of the other APIs Etna speaks, against a real `etna serve` (and `etna mcp`):
# ollama (Ollama API), @anthropic-ai/sdk (Messages API), openai (Responses API) and
# @modelcontextprotocol/sdk (MCP over Streamable HTTP and stdio). Needs node and
# tests/clients/node_modules (scripts/test-clients-setup); skips, saying so, without ../shared.
find_program(ETNA_NODE node)
foreach(suite ollama anthropic responses mcp)
  add_test(NAME ${suite}_js_client
    COMMAND ${CMAKE_COMMAND}
      -DNODE=${ETNA_NODE}
      -DCLIENTS_DIR=${PROJECT_SOURCE_DIR}/tests/clients
      -DETNA_BINARY=$<TARGET_FILE:etna>
      -DSHARED_DIR=${ETNA_SHARED_DIR}
      -DSUITE=${suite}.test.mjs
      -P ${PROJECT_SOURCE_DIR}/tests/clients/run-node-suite.cmake)
  set_tests_properties(${suite}_js_client PROPERTIES TIMEOUT 600 LABELS "integration;clients")
endforeach()

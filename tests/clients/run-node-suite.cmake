# Runs one node --test suite in tests/clients with ETNA_BINARY set; fails with set-up advice when
# node or the npm dependencies are missing. Invoked by tests/integration/*.cmake (cmake -P).
if(NOT NODE OR NOT EXISTS "${NODE}")
  message(FATAL_ERROR "node not found: install Node.js 20+ (scripts/install-deps does)")
endif()
if(NOT EXISTS "${CLIENTS_DIR}/node_modules")
  message(FATAL_ERROR "${CLIENTS_DIR}/node_modules is missing: run scripts/test-clients-setup first (CI runs it)")
endif()
set(ENV{ETNA_BINARY} "${ETNA_BINARY}")
if(SHARED_DIR)
  set(ENV{ETNA_SHARED_DIR} "${SHARED_DIR}")
endif()
execute_process(COMMAND "${NODE}" --test "${SUITE}"
  WORKING_DIRECTORY "${CLIENTS_DIR}"
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "node --test ${SUITE} failed (exit ${rc})")
endif()

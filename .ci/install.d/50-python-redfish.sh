# HPE's and DMTF's Redfish tools, from PyPI, for tests/bmc_tools.rs, which runs them
# against `vault bmc-simulator` on loopback. Two venvs, because both python-ilorest-library
# and DMTF's python-redfish-library (pulled in by the validators) install a module named
# `redfish`, and whichever is installed last breaks the other.
#   $VAULT_PY_REDFISH/hpe   ilorest (HPE's iLOrest CLI), python-ilorest-library
#   $VAULT_PY_REDFISH/dmtf  redfish-protocol-validator, redfish-service-validator
# $VAULT_PY_REDFISH defaults to /opt/vault-py-redfish; the tests read the same variable.
# Latest releases on purpose: the tests are there to notice when HPE's or DMTF's tools change.
vault_py_redfish="${VAULT_PY_REDFISH:-/opt/vault-py-redfish}"
apt_install python3 python3-venv
vault_py_venv() { # DIR PKG…
    local dir="$1"
    shift
    if [ ! -x "$dir/bin/python" ]; then
        python3 -m venv "$dir"
    fi
    "$dir/bin/python" -m pip install -q --upgrade pip
    "$dir/bin/python" -m pip install -q --upgrade "$@"
    "$dir/bin/python" -m pip list 2>/dev/null | grep -i -E "^($(echo "$@" | tr ' ' '|' | sed 's/-/[-_]/g')) "
}
vault_py_venv "$vault_py_redfish/hpe" ilorest python-ilorest-library
vault_py_venv "$vault_py_redfish/dmtf" redfish-protocol-validator redfish-service-validator
unset -f vault_py_venv
unset vault_py_redfish

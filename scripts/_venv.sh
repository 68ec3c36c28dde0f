# Shared by scripts/serve and scripts/test: create .venv and install the project into it.
ensure_venv() {
    local extra="$1"
    local python="${PYTHON:-python3}"
    if [ ! -x .venv/bin/python ]; then
        "$python" -m venv .venv
        .venv/bin/python -m pip install --quiet --upgrade pip
    fi
    local stamp=".venv/.installed${extra}"
    # an install with the test extra also serves the plain one
    if [ -z "$extra" ] && [ -f ".venv/.installed[test]" ] && [ ! pyproject.toml -nt ".venv/.installed[test]" ]; then
        return 0
    fi
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        .venv/bin/python -m pip install --quiet -e ".${extra}"
        touch "$stamp"
    fi
}

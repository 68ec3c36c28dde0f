# Shared by scripts/serve and scripts/test: create .venv and install the project into it.
ensure_venv() {
    local extra="$1"
    local python="${PYTHON:-python3}"
    if [ ! -x .venv/bin/python ]; then
        "$python" -m venv .venv
        .venv/bin/python -m pip install --quiet --upgrade pip
    fi
    local stamp=".venv/.installed${extra}"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        .venv/bin/python -m pip install --quiet -e ".${extra}"
        touch "$stamp"
    fi
}

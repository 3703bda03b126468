# One image for every AOC service: the seven engines (`python -m services.<engine>`)
# and the gateway (the default command). compose.yaml picks the command per container.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AOC_DATA_DIR=/data

# Non-root. /data exists and belongs to the user so that a named volume mounted there
# (or at /data/frontend) starts out writable: Docker copies ownership into a new volume.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin aoc \
    && mkdir -p /data/frontend \
    && chown -R aoc:aoc /data

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so a code change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import subprocess, sys, tomllib; \
deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
subprocess.check_call([sys.executable, '-m', 'pip', 'install', '--no-cache-dir', *deps])"

COPY . .
RUN pip install --no-cache-dir . && rm -rf build *.egg-info

USER aoc
EXPOSE 8080
CMD ["python", "-m", "gateway"]

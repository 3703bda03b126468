from services.integrity.engine import IntegrityEngine
from services.runtime import run

if __name__ == "__main__":
    run(IntegrityEngine)

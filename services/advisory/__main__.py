from services.advisory.engine import AdvisoryEngine
from services.runtime import run

if __name__ == "__main__":
    run(AdvisoryEngine)

from services.healing.engine import HealingEngine
from services.runtime import run

if __name__ == "__main__":
    run(HealingEngine)

from services.factory.engine import FactoryEngine
from services.runtime import run

if __name__ == "__main__":
    run(FactoryEngine)

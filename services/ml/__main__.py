from services.ml.engine import MlEngine
from services.runtime import run

if __name__ == "__main__":
    run(MlEngine)

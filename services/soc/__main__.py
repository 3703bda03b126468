from services.runtime import run
from services.soc.engine import SocEngine

if __name__ == "__main__":
    run(SocEngine)

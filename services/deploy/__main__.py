from services.deploy.engine import DeployEngine
from services.runtime import run

if __name__ == "__main__":
    run(DeployEngine)

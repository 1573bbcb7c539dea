"""Flask extensions, created unbound and initialised in create_app."""
from flask_migrate import Migrate
from flask_smorest import Api

migrate = Migrate()
api = Api()

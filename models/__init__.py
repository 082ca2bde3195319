"""SQLAlchemy 2 typed models, query functions and Alembic migrations.

Importing this package registers every table on `Base.metadata` (Alembic's target).
"""

from models.base import Base
from models.messaging import OutboundMessage, TemplateSendEvent
from models.users import Binding, SubscriberDaily

__all__ = ["Base", "Binding", "OutboundMessage", "SubscriberDaily", "TemplateSendEvent"]

"""Form data for the grid_quick demo process, shared by unit, integration and API tests."""
from datetime import datetime, timedelta, timezone

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=CST)  # a Monday, a working day

REGISTER = {"category": "garbage", "description": "小区东门垃圾堆放三天未清运", "location": "一网格3栋东侧", "verified": True}
REVIEW_SELF = {"decision": "self", "opinion": "社区自行处置"}
REVIEW_DISPATCH = {"decision": "dispatch", "opinion": "派城管处置"}
HANDLE = {"result": "已清运"}
SUPERVISE = {"instruction": "限期处置", "result": "已督促完成"}
REINSPECT = {"passed": True, "note": "已清理"}
CLOSE = {"summary": "办结", "satisfaction": "satisfied"}

"""The LangGraph state machine that runs one conversational turn."""

"""LangGraph agents over the fine-tuned model (see issue "Agents")."""

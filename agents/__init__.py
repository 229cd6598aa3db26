"""LangGraph agents over the fine-tuned model: extraction from financial documents and rule-based decisions."""

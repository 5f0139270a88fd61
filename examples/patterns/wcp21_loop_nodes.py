"""Node code for wcp21_structured_loop.yaml: a drafter and a reviewer that approves the third draft."""


def draft(previous):
    """The first iteration gets the trigger ({topic, rounds_needed}); later ones the last review."""
    round_ = previous.get("round", 0) + 1
    notes = previous.get("notes", [])
    return {"topic": previous["topic"], "rounds_needed": previous.get("rounds_needed", 3), "round": round_,
            "text": f"Reply about {previous['topic']} (draft {round_}, {len(notes)} notes applied)", "notes": notes}


def review(draft):
    approved = draft["round"] >= draft["rounds_needed"]
    notes = draft["notes"] + ([] if approved else [f"round {draft['round']}: be more specific"])
    return {**draft, "approved": approved, "notes": notes}


def publish(reviewed):
    return {"published": reviewed["text"], "rounds": reviewed["round"]}

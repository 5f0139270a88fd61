"""Node functions for the examples. The "external" calls are simulated with sleeps, and say so.

Nothing here reaches the network: each function stands in for an AI call or an action (Slack,
Notion, a CRM) and takes the time such a call takes.
"""
import time


def draft_reply(ticket, seconds=1.0):
    """Stands in for an AI call (simulated with a sleep)."""
    time.sleep(seconds)
    return {"ticket": ticket["id"], "reply": f"Hi {ticket['customer']}, thanks for reporting '{ticket['subject']}'. "
                                             "We are on it.", "priority": ticket.get("priority", "normal")}


def post_to_slack(draft, seconds=3.0, ctx=None):
    """Stands in for a Slack API call (simulated with a sleep; stops early if cancelled)."""
    if ctx is not None and ctx.wait_cancelled(seconds):
        return None
    if ctx is not None:
        ctx.logger.info("posted to #support (idempotency key %s)", ctx.idempotency_key)
    return {"channel": "#support", "posted": draft["reply"][:40]}


def save_to_notion(draft, seconds=3.0, ctx=None):
    """Stands in for a Notion API call (simulated with a sleep; stops early if cancelled)."""
    if ctx is not None and ctx.wait_cancelled(seconds):
        return None
    return {"page": f"ticket-{draft['ticket']}", "saved": True}


def summarize(results):
    slack, notion = results
    return f"posted to {slack['channel']} and saved {notion['page']}"


def enrich(contact, seconds=0.5):
    """Stands in for a CRM lookup per contact (simulated with a sleep)."""
    time.sleep(seconds * (3 if contact.get("slow") else 1))
    return {**contact, "score": len(contact["name"]) * 7 % 100}


def send_email(contact, seconds=0.3):
    """Stands in for an email API call (simulated with a sleep)."""
    time.sleep(seconds)
    return f"emailed {contact['name']} (score {contact['score']})"


def build_report(lines):
    return {"sent": len(lines), "lines": lines}


def publish(draft):
    return f"published: {draft}"

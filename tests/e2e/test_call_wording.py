"""How the web client words why the server ended a 1:1 call (fastsock/web/js/calls/wording.js):
the final line of the call screen and the timeline entry. The functions are imported into the
page."""

from playwright.async_api import Page

WORDS = """async () => {
  const m = await import('/static/js/calls/wording.js');
  const call = (outcome, reason) => ({
    caller_id: 'a', callee_id: 'b', media: 'video', duration_s: 65, outcome, end_reason: reason,
  });
  const caller = { meId: 'a', partnerName: 'Bob' };
  const callee = { meId: 'b', partnerName: 'Alice' };
  const out = {};
  for (const reason of ['hangup', 'connection_lost', 'server_lost']) {
    out[reason] = {
      ended: m.finalText('call.ended', call('completed', reason), caller),
      entry: m.callSummary(call('completed', reason), 'a', 'Bob').detail,
      cancelled: m.finalText('call.cancelled', call('cancelled', reason), caller),
      missed: m.finalText('call.cancelled', call('cancelled', reason), callee),
      missedEntry: m.callSummary(call('cancelled', reason), 'b', 'Alice').detail,
    };
  }
  return out;
}"""


async def _page(new_page) -> Page:
    page = await new_page()
    await page.goto("/")
    return page


async def test_the_end_reasons_of_1_1_calls_are_worded(new_page) -> None:
    words = await (await _page(new_page)).evaluate(WORDS)
    assert words["hangup"] == {
        "ended": "Call ended · 1:05",
        "entry": "Outgoing video call",
        "cancelled": "Call cancelled",
        "missed": "Missed call from Alice",
        "missedEntry": "Alice called you",
    }
    # A dropped connection is said of answered calls only (an unanswered one is its outcome).
    assert words["connection_lost"] == words["hangup"] | {
        "ended": "Call ended — connection lost · 1:05",
        "entry": "Outgoing video call · connection lost",
    }
    # A call the call server could not carry through a restart, answered or not.
    assert words["server_lost"] == {
        "ended": "Call ended — the call server restarted · 1:05",
        "entry": "Outgoing video call · the call server restarted",
        "cancelled": "Call cancelled — the call server restarted",
        "missed": "Missed call from Alice — the call server restarted",
        "missedEntry": "Alice called you · the call server restarted",
    }

async def test_app_shell_is_served_with_a_strict_policy(new_page, base_url: str) -> None:
    page = await new_page()
    response = await page.goto("/")
    assert response is not None and response.status == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert await page.title() == "FastSock"

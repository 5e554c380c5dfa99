from pipeline.text import html_to_text, sanitize_html


def test_plain_text_keeps_paragraphs_and_decodes_entities():
    text = html_to_text("<p>Fish &amp; chips</p><p>Second&nbsp;para &#8220;quoted&#8221;</p>")
    assert text == "Fish & chips\n\nSecond para \u201cquoted\u201d"


def test_plain_text_drops_scripts_and_styles_with_their_content():
    assert html_to_text("<style>p{}</style>Hi<script>alert(1)</script> there") == "Hi there"


def test_plain_text_of_plain_text_is_whitespace_normalized():
    assert html_to_text("  two   words \r\n\r\n next ") == "two words\n\nnext"


def test_text_is_nfc():
    assert html_to_text("Cafe\u0301") == "Caf\u00e9"


def test_sanitizer_removes_scripts_handlers_and_javascript_urls():
    dirty = '<p onclick="x()">Hi<script>bad()</script> <a href="javascript:alert(1)">l</a> <a href="https://ok.example/">ok</a></p>'
    clean = sanitize_html(dirty)
    assert "script" not in clean and "onclick" not in clean and "javascript" not in clean
    assert 'href="https://ok.example/"' in clean
    assert "Hi" in clean

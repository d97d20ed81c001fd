<?php
// Headers: Set-Cookie: a=1, Set-Cookie: b=2 (two separate headers),
// X-Custom: yes, Content-Type: text/plain.
// ?status=NNN sets http_response_code(NNN); ?location=URL sends
// "Location: URL" (PHP then answers 302 unless a 201/3xx status was set).
// Body: "headers".
header('Content-Type: text/plain');
header('Set-Cookie: a=1', false);
header('Set-Cookie: b=2', false);
header('X-Custom: yes');
if (isset($_GET['status'])) {
    http_response_code((int) $_GET['status']);
}
if (isset($_GET['location'])) {
    header('Location: ' . $_GET['location']);
}
echo 'headers';

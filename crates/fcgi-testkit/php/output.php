<?php
// ?bytes=N writes N bytes of the test pattern, 64 KiB per echo, flushing each.
// Pattern: byte i = (i * 31 + 7) % 251 (period 251), the same bytes as
// fcgi_testkit::pattern(N). Headers: Content-Type: application/octet-stream,
// X-Bytes: N.
$n = isset($_GET['bytes']) ? max(0, (int) $_GET['bytes']) : 0;
header('Content-Type: application/octet-stream');
header('X-Bytes: ' . $n);
require __DIR__ . '/lib.php';
write_pattern($n);

<?php
// Full-duplex test: FIRST writes ?out=N bytes of the test pattern (64 KiB per
// echo, flushed), THEN reads all of php://input in chunks, then prints
//   "\nINPUT len=LEN sha256=HEX"
// So the body is: pattern(N) . "\nINPUT len=LEN sha256=HEX" (no final newline).
// Content-Type: application/octet-stream.
// Note: PHP reads a POST body itself before the script starts when the body is
// no larger than post_max_size (8M by default) and CONTENT_TYPE is set; use
// PUT, or a body above post_max_size, to make the script really write first.
$n = isset($_GET['out']) ? max(0, (int) $_GET['out']) : 0;
header('Content-Type: application/octet-stream');
require __DIR__ . '/lib.php';
write_pattern($n);
[$len, $sha256] = hash_input();
echo "\nINPUT len=" . $len . ' sha256=' . $sha256;

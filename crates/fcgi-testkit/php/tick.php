<?php
// ?file=PATH appends "tick N\n" to PATH every 100 ms (N = 1, 2, ...) for up to
// ?count=C ticks (default 300, i.e. 30 s), echoing the same line and flushing
// it each time. When the client goes away, the next flush fails and php-fpm
// stops the script, so the file stops growing. Final line (if never
// cancelled): "done".
header('Content-Type: text/plain');
$file = isset($_GET['file']) ? $_GET['file'] : null;
$count = isset($_GET['count']) ? max(0, (int) $_GET['count']) : 300;
for ($i = 1; $i <= $count; $i++) {
    $line = "tick $i\n";
    if ($file !== null) {
        file_put_contents($file, $line, FILE_APPEND);
    }
    echo $line;
    flush();
    usleep(100000);
}
echo "done";

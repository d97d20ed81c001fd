<?php
// A careless script, for the gateway's safety tests: the query decides
// what it sends.
// ?status=TEXT sends "Status: TEXT"; every ?h[]=LINE sends the header LINE
// as it is (repeats kept); ?cl=N sends "Content-Length: N".
// Body: ?body=TEXT (default "0123456789"), repeated ?repeat=K times.
if (isset($_GET['status'])) {
    header('Status: ' . $_GET['status']);
}
foreach ($_GET['h'] ?? [] as $line) {
    header($line, false);
}
if (isset($_GET['cl'])) {
    header('Content-Length: ' . $_GET['cl']);
}
echo str_repeat($_GET['body'] ?? '0123456789', (int) ($_GET['repeat'] ?? 1));

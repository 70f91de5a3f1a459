// Drives the router's /docs page (Swagger UI) in the machine's headless Chromium, for
// tests/tests/docs_page.rs. One argument, a JSON object:
//   { "url": "<router>/docs", "screenshot": "<png path>",
//     "try": { "method": "post", "path": "/v1/auth/register", "body": "<JSON text>" } }
// Prints one JSON object on stdout: the operations the page lists, what the "try it" call
// showed, and any Content-Security-Policy violation or request to another origin. Every wait is
// bounded; a failure exits non-zero with the reason on stderr.
import { chromium } from "playwright-core";

const WAIT = { timeout: 20_000 };
const options = JSON.parse(process.argv[2] ?? "{}");
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
// The last resort if something hangs past every bounded wait.
setTimeout(() => {
  console.error("docs-page.mjs: gave up after 120 s");
  process.exit(3);
}, 120_000).unref();

const browser = await chromium.launch({
  executablePath,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking"],
  timeout: 30_000,
});
try {
  const origin = new URL(options.url).origin;
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const foreign = [];
  page.on("request", (request) => {
    const url = request.url();
    if (!url.startsWith(origin) && !url.startsWith("data:")) foreign.push(url);
  });
  const console_errors = [];
  page.on("console", (message) => {
    if (message.type() === "error") console_errors.push(message.text());
  });
  await page.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener("securitypolicyviolation", (e) =>
      window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`),
    );
  });

  const started = Date.now();
  const response = await page.goto(options.url, { waitUntil: "load", ...WAIT });
  const headers = response.headers();
  await page.waitForSelector(".opblock", WAIT);
  const rendered_ms = Date.now() - started;
  const operations = await page.$$eval(".opblock", (blocks) =>
    blocks.map((block) => [
      block.querySelector(".opblock-summary-method")?.textContent.trim().toUpperCase(),
      block.querySelector(".opblock-summary-path")?.getAttribute("data-path"),
    ]),
  );

  // "Try it out" on one operation, as a person would: open it, edit the body, execute.
  const { method, path, body } = options.try;
  const block = page
    .locator(`.opblock.opblock-${method.toLowerCase()}`)
    .filter({ has: page.locator(`.opblock-summary-path[data-path="${path}"]`) });
  await block.locator(".opblock-summary").first().click();
  await block.locator("button.try-out__btn").click(WAIT);
  if (body !== undefined) await block.locator("textarea.body-param__text").fill(body, WAIT);
  const tried = Date.now();
  await block.locator("button.execute").click(WAIT);
  const live = block.locator(".live-responses-table .response");
  await live.first().waitFor(WAIT);
  const status = (await live.locator(".response-col_status").first().textContent()).trim();
  const response_body = (await live.locator(".response-col_description pre").first().textContent()).trim();
  const request_url = (await block.locator(".request-url pre").first().textContent()).trim();
  const tried_ms = Date.now() - tried;

  await live.first().scrollIntoViewIfNeeded();
  await page.screenshot({ path: options.screenshot, fullPage: true });
  const csp_violations = await page.evaluate(() => window.__cspViolations);

  console.log(
    JSON.stringify({
      headers,
      operations,
      tried: { status, body: response_body, request_url },
      csp_violations,
      console_errors,
      foreign_requests: foreign,
      timings_ms: { rendered: rendered_ms, tried: tried_ms },
    }),
  );
} finally {
  await browser.close();
}

// Drives Neo4j Browser in headless Chromium the way an analyst does, for
// tests/integration/test_browser_e2e.py:
//   connect (no authentication) -> :style URL -> :play URL (the guide) -> paste the
//   "ring of a subscriber" file and run it (sets the parameter, runs the query) -> run its query
//   on its own to see the picture -> wait for the graph -> screenshots.
// Usage: node investigate_ring.mjs '<JSON config>'. Prints one JSON line with what it saw;
// exits 1 (with "error" in that line) when a step fails.
// Config: browserUrl, boltAddress (host:port), styleUrl, guideUrl, fileText (the whole kit
// file), query (its query alone), screenshot, guideScreenshot, executablePath, timeoutMs.
import { chromium } from 'playwright-core'

const config = JSON.parse(process.argv[2] ?? '{}')
const timeout = config.timeoutMs ?? 60000
const seen = { connected: false, style: null, guide: null, statements: [], graph: null }

function fail(step, error) {
  seen.error = `${step}: ${error?.message ?? error}`
  return seen
}

async function run(page, text) {
  // Paste into Browser's editor, then press its run button.
  const editor = page.getByTestId('activeEditor')
  await editor.click()
  await page.keyboard.press('ControlOrMeta+A')
  await page.keyboard.press('Delete')
  await page.keyboard.insertText(text)
  await page.getByTestId('editor-Run').click()
}

function newestFrame(page, command) {
  // Frames stack newest first: the first one whose command starts like `command`.
  return page
    .getByTestId('frame')
    .filter({ has: page.getByTestId('frameCommand').filter({ hasText: command }) })
    .first()
}

async function connect(page) {
  await page.goto(config.browserUrl)
  await page.getByTestId('authenticationMethod').waitFor()
  await page.getByTestId('bolt-scheme-select').selectOption({ label: 'bolt://' })
  await page.getByTestId('boltaddress').fill(config.boltAddress)
  await page.getByTestId('authenticationMethod').selectOption({ label: 'No authentication' })
  await page.getByTestId('connect').click()
  // Browser words the success frame differently when the server has auth disabled.
  await page
    .getByText('You are connected')
    .or(page.getByText('You have a working connection'))
    .first()
    .waitFor()
  seen.connected = true
  // Draw only what a query returns (the guide suggests the same for ring pictures).
  await run(page, ':config autoComplete: false')
}

async function loadStyle(page) {
  // Browser reads the server's settings (the allowed hosts among them) just after it
  // connects; until then it allows only its built-in hosts. A person would run it again.
  const until = Date.now() + timeout
  for (let attempt = 1; ; attempt++) {
    await run(page, `:style ${config.styleUrl}`)
    const frame = newestFrame(page, ':style')
    const loaded = frame.getByText('node.Ring').first()
    const refused = frame.getByText('not allowed').first()
    await loaded.or(refused).waitFor()
    if (await loaded.isVisible()) {
      seen.style = { attempts: attempt, text: (await frame.innerText()).slice(0, 4000) }
      return
    }
    if (Date.now() > until) throw new Error(await frame.innerText())
    await page.waitForTimeout(1000)
  }
}

async function playGuide(page) {
  await run(page, `:play ${config.guideUrl}`)
  const frame = newestFrame(page, ':play')
  await frame.getByText('Investigate a fraud ring').first().waitFor()
  const slides = []
  const next = frame.getByTestId('nextSlide')
  // Walk the slides as a reader does, collecting each one's text.
  for (let i = 0; i < 20; i++) {
    slides.push(await frame.getByTestId('carousel').innerText())
    if (!(await next.isVisible())) break
    await next.click()
    await page.waitForTimeout(200)
  }
  seen.guide = { slides: slides.length, text: slides.join('\n----\n').slice(0, 20000) }
  if (config.guideScreenshot) {
    // Back to the first slide for the picture.
    for (let i = 0; i < slides.length; i++) {
      const previous = frame.getByTestId('previousSlide')
      if (!(await previous.isVisible())) break
      await previous.click()
    }
    await frame.screenshot({ path: config.guideScreenshot })
  }
}

async function investigate(page) {
  // The file as it is: Browser runs it as a script (the :param line, then the query) and
  // shows each statement's status.
  await run(page, config.fileText)
  const script = newestFrame(page, '//')
  const statuses = script.getByTestId('multi-statement-list-icon')
  await statuses.nth(1).waitFor()
  const until = Date.now() + timeout
  for (;;) {
    seen.statements = await statuses.evaluateAll((icons) => icons.map((icon) => icon.title))
    const done = seen.statements.every((s) => /success|error/i.test(s))
    if (done || Date.now() > until) break
    await page.waitForTimeout(250)
  }

  // The query again on its own (the parameter stays set) to see its result drawn.
  await run(page, config.query)
  const frame = page.getByTestId('frame').first()
  const canvas = frame.locator('svg.neod3viz')
  await canvas.locator('g.node').first().waitFor()
  // Let the force layout settle before counting and taking the picture.
  let previous = ''
  for (let i = 0; i < 20; i++) {
    await page.waitForTimeout(500)
    const positions = await canvas
      .locator('g.node')
      .evaluateAll((nodes) => nodes.map((n) => n.getAttribute('transform')).join(';'))
    if (positions === previous) break
    previous = positions
  }
  seen.graph = {
    nodes: await canvas.locator('g.node').count(),
    relationships: await canvas.locator('g.relationship').count(),
    captions: await canvas
      .locator('g.node text')
      .evaluateAll((texts) => texts.map((t) => t.textContent).filter(Boolean)),
    overview: (await frame.innerText()).match(/Displaying .*/)?.[0] ?? null,
  }
  const box = await frame.boundingBox()
  await page.screenshot({
    path: config.screenshot,
    clip: { x: 0, y: 0, width: page.viewportSize().width, height: box.y + box.height + 8 },
  })
}

async function main() {
  const browser = await chromium.launch({
    executablePath: config.executablePath,
    headless: true,
    // Root in containers and CI has no user namespace for Chromium's sandbox.
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  })
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } })
    page.setDefaultTimeout(timeout)
    const steps = [
      ['connect', connect],
      ['style', loadStyle],
      ['guide', playGuide],
      ['investigate', investigate],
    ]
    for (const [name, step] of steps) {
      try {
        await step(page)
      } catch (error) {
        if (config.screenshot) {
          await page.screenshot({ path: `${config.screenshot}.failed.png` }).catch(() => {})
        }
        return fail(name, error)
      }
    }
    return seen
  } finally {
    await browser.close()
  }
}

main()
  .then((result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`)
    process.exit(result.error ? 1 : 0)
  })
  .catch((error) => {
    process.stdout.write(`${JSON.stringify(fail('browser', error))}\n`)
    process.exit(1)
  })

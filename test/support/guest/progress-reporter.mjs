// Vitest reporter that appends one JSON line per finished test (and per file
// start/end) to $TOA_PROGRESS_FILE as it happens. The JSON reporter writes
// only when the whole run ends; when a guest times out, hangs or panics
// mid-run, this file still says what passed, what failed and which file was
// running.
import fs from 'node:fs';

export default class ProgressReporter {
  constructor() {
    this.file = process.env.TOA_PROGRESS_FILE;
  }

  write(record) {
    if (this.file) fs.appendFileSync(this.file, `${JSON.stringify({ ...record, at: Date.now() })}\n`);
  }

  onTestModuleStart(testModule) {
    this.write({ type: 'file-start', file: testModule.moduleId });
  }

  onTestCaseResult(testCase) {
    const r = testCase.result();
    this.write({
      type: 'test', file: testCase.module.moduleId, name: testCase.fullName, status: r.state,
      ms: Math.round(testCase.diagnostic()?.duration ?? 0),
      error: r.errors?.length ? r.errors.map((e) => e.message).join('\n').slice(0, 2000) : undefined,
    });
  }

  onTestModuleEnd(testModule) {
    const errors = typeof testModule.errors === 'function' ? testModule.errors() : [];
    this.write({ type: 'file-end', file: testModule.moduleId, state: testModule.state(), errors: errors.map((e) => e.message) });
  }
}
